"""Tables of the hub database. Migrations in `migrations/` create them."""

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    pass


class TokenRow(Base):
    """An API bearer token; only the secret's hash is kept.

    The bootstrap admin token has no `user_name` and carries its role itself;
    a user's token has `role` "user" and acts with its user's role and scope
    as they are at each request, so `users set-role` takes effect at once.
    """

    __tablename__ = "tokens"
    __table_args__ = (Index("ix_tokens_user_name", "user_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    user_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Written at most once a minute per token (see _people.py): a write per
    # request would serialise every read behind the database's write lock.
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class UserRow(Base):
    """A person (or a CI system) with a role, optionally scoped to labels."""

    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    # matchLabels the role is limited to; None: the whole fleet.
    scope: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    # argon2id PHC string, for the console; None: tokens only.
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))


class ClaimRow(Base):
    """A provisioning claim: one token that may enroll up to max_uses devices."""

    __tablename__ = "claims"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Set for claims declared in a ProvisioningClaim manifest.
    name: Mapped[str | None] = mapped_column(String(63), unique=True, nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    # Glob patterns a device's name must match to enroll with it (empty: any).
    names: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DeviceRow(Base):
    """An enrolled device.

    Deployments select on `labels` (from the claim, then operators) and
    `platform_labels` (fogline.dev/os and /arch, derived by the hub from the
    facts the device gave when it enrolled, never moved by a report).
    `reported_labels` is what the device asks for: shown, never selected on
    until an operator promotes a key into `labels`.
    """

    __tablename__ = "devices"
    # Keyset pages sorted by last report (GET /v1/devices?sort=last_seen);
    # on PostgreSQL the migration makes it (last_seen NULLS FIRST, id).
    # ...and pages filtered by health, in name order (hub/_inventory.py).
    __table_args__ = (
        Index("ix_devices_last_seen_id", "last_seen", "id"),
        Index("ix_devices_health_name_id", "health", "name", "id"),
        Index("ix_devices_agent_version_name_id", "agent_version", "name", "id"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    reported_labels: Mapped[dict[str, str]] = mapped_column(JSON)
    platform_labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    claim_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("claims.id", ondelete="SET NULL"), nullable=True
    )
    cert_serial: Mapped[str] = mapped_column(String(64))
    # The certificate the device renewed from: accepted until the device
    # shows its new one, so a node that lost the renewal's answer (a crash,
    # a cut connection) still connects and renews again.
    prev_cert_serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Key id of the CA that issued cert_serial (NULL: issued before renewals
    # were tracked); `fogline ca retire-old` reads it.
    cert_ca_key_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cert_not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    enrolled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The last report beyond facts (outbox, modules, updates, drift), as sent.
    reported: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The enrolled key's fingerprint: an enrollment retried with the same key
    # (its answer was lost) gets its certificate again instead of a conflict.
    key_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Records the node's outbox lost (dropped over quota, expired, dead-
    # lettered: counters it keeps across restarts), as of its last report, and
    # when a report last showed that count rising: the outbox-dropping alert.
    # Server defaults only: a Core insert into an older schema (a migration
    # test) must not name these columns.
    outbox_lost: Mapped[int] = mapped_column(BigInteger, server_default="0")
    outbox_lost_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # ok, warning or critical: the worst of the device's active alerts,
    # written by the alert pass with them (hub/_alerts.py), so that
    # `GET /v1/devices?health=` is a column the database indexes.
    health: Mapped[str] = mapped_column(String(16), server_default="ok")
    # facts["agent_version"] again, as a column: `GET /v1/devices?version=`
    # is answered from its index, not by reading every device's JSON.
    agent_version: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # The certificate cert_serial names, as the last renewal issued it: a
    # retry of that renewal (the same key, from the previous certificate) is
    # answered with it again, not with a new one that would supersede the
    # one the node may hold. Deferred: only a renewal reads it.
    renewed_cert_pem: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)


class DeviceLabelRow(Base):
    """One label a device is selected on (its effective labels: see
    hub/_device_labels.py), one row per key: the index selectors are
    answered from in SQL, the same on SQLite and PostgreSQL, where the JSON
    columns of `devices` would need a scan.

    Derived from `DeviceRow.labels` and `platform_labels` and rewritten
    whenever a flush changes either (hub/_label_index.py); never written
    on its own.
    """

    __tablename__ = "device_labels"
    __table_args__ = (Index("ix_device_labels_key_value", "key", "value", "device_id"),)
    device_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(63))


class RevokedKeyRow(Base):
    """The key of a revoked device: refused at enrollment forever, also after
    the device row is removed (`fogline devices rm`)."""

    __tablename__ = "revoked_keys"
    key_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Who held it, for the operator's record; the device may be gone.
    device_id: Mapped[str] = mapped_column(String(36))
    device_name: Mapped[str] = mapped_column(String(63))


class DeploymentRow(Base):
    """An applied Deployment manifest, stored as its canonical document."""

    __tablename__ = "deployments"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    applied_by: Mapped[str] = mapped_column(String(64))


class ReleaseKeyRow(Base):
    """A public key trusted for module signatures (from a ReleaseKey manifest)."""

    __tablename__ = "release_keys"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(128))  # base64 of the 32 raw bytes
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # The module name patterns the key may sign; None: every module.
    modules: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class DesiredStateRow(Base):
    """The desired-state document the hub serves a device, and what it applied."""

    __tablename__ = "desired_states"
    device_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[str] = mapped_column(String(80))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    applied_revision: Mapped[str | None] = mapped_column(String(80), nullable=True)
    applied_ok: Mapped[bool] = mapped_column(default=True)
    applied_error: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    # fleet_generation.desired_seq when this row last changed (or its device
    # was revoked): replicas read "changed since N" to wake just those polls.
    seq: Mapped[int] = mapped_column(BigInteger, index=True, default=0, server_default="0")
    # The releases ({name, version, digest}) the document before this one
    # named: a device moving between the two (an update, a rollback) may
    # still fetch them. Set when the revision changes.
    previous_releases: Mapped[list[dict[str, str]]] = mapped_column(
        JSON, default=list, server_default="[]"
    )


class FleetGenerationRow(Base):
    """Two counters every hub replica watches (a single row, id=1).

    `generation` is bumped by every change to deployments, so a replica knows
    its cached, parsed deployments are stale. `desired_seq` is bumped by every
    change to any device's desired state and stamped on that state's row, so
    one cheap query per replica per tick finds the devices to wake.
    """

    __tablename__ = "fleet_generation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)
    desired_seq: Mapped[int] = mapped_column(BigInteger)


class ReleaseRow(Base):
    """A pushed module release: a signed archive in the content-addressed store.

    A (name, version) is immutable once pushed: pushing it again with other
    bytes is refused, so a version seen by one device is the version every
    device gets.
    """

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_releases_name_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(71), index=True)  # sha256:<64 hex>
    size: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)  # the SignatureEnvelope
    pushed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    pushed_by: Mapped[str] = mapped_column(String(64))


class TelemetryRow(Base):
    """One outbox record from a device, stored once per (device, stream, seq)."""

    __tablename__ = "telemetry"
    __table_args__ = (
        UniqueConstraint("device_id", "stream", "seq", name="uq_telemetry_device_stream_seq"),
        Index("ix_telemetry_created", "created_at"),
        Index("ix_telemetry_received", "received_at"),
    )
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    device_id: Mapped[str] = mapped_column(String(36), ForeignKey("devices.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(BigInteger)
    priority: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    payload: Mapped[Any] = mapped_column(JSON)


class HealthSampleRow(Base):
    """A device's health at one report (`step_s` 0), or a rollup of a bucket of
    `step_s` seconds starting at `at_ms` (see _health.py)."""

    __tablename__ = "health_samples"
    __table_args__ = (
        Index("ix_health_samples_device_step_at", "device_id", "step_s", "at_ms"),
        Index("ix_health_samples_step_at", "step_s", "at_ms"),
    )
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    device_id: Mapped[str] = mapped_column(String(36), ForeignKey("devices.id", ondelete="CASCADE"))
    step_s: Mapped[int] = mapped_column(Integer)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    cpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    load1: Mapped[float | None] = mapped_column(Float, nullable=True)
    load5: Mapped[float | None] = mapped_column(Float, nullable=True)
    load15: Mapped[float | None] = mapped_column(Float, nullable=True)
    mem_used_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mem_available_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disk_free_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disk_total_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    temperature_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    net_rx_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    net_tx_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    agent_rss_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Per module: state, restarts, cpu_percent, rss_bytes (raw rows only).
    modules: Mapped[Any] = mapped_column(JSON, nullable=True)
    # The outbox's drop counter (quota drops + expired) at the report: raw rows
    # only, for canary analysis (`outbox-drops`).
    outbox_dropped: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The data plane's error and drop counters at the report (a rollup keeps
    # their most): `pipeline-errors` and `pipeline-drops` in canary analysis.
    pipeline_errors: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pipeline_dropped: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AlertRow(Base):
    """An alert the hub raised about a device (see _alerts.py); active until cleared."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_cleared_at", "cleared_at"),
        Index("ix_alerts_device_kind", "device_id", "kind"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str] = mapped_column(String(36), ForeignKey("devices.id", ondelete="CASCADE"))
    device_name: Mapped[str] = mapped_column(String(63))
    detail: Mapped[str] = mapped_column(String(512))
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # What the detail says, as data: a forecast's seconds and interval, a
    # peer anomaly's metric and z-score (hub/_insights.py); None for the rest.
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class RolloutRow(Base):
    """A staged rollout of one apply (or delete) to the devices it changes.

    `wave_bounds` holds the cumulative device count at the end of each wave;
    `previous_deployments` the documents before the change (None: it did not
    exist), so a rollback also restores what `plan` compares against.
    """

    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_state", "state"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    deployments: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    wave_bounds: Mapped[list[int]] = mapped_column(JSON)
    current_wave: Mapped[int] = mapped_column(Integer)
    wave_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # An operator's resume after a failed gate accepts the failures so far.
    accepted_failures: Mapped[int] = mapped_column(Integer, default=0)
    accepted_wave: Mapped[int] = mapped_column(Integer, default=-1)
    previous_deployments: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Canary analysis (spec.rollout.analysis): the seed of the canary order,
    # the strata, and each analysed wave's verdicts; None without analysis.
    analysis: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class RolloutDeviceRow(Base):
    """One device in a rollout: its wave, state, and the documents it moves between."""

    __tablename__ = "rollout_devices"
    __table_args__ = (Index("ix_rollout_devices_device", "device_id"),)
    rollout_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    target_revision: Mapped[str] = mapped_column(String(80))
    target_document: Mapped[dict[str, Any]] = mapped_column(JSON)
    previous_revision: Mapped[str | None] = mapped_column(String(80), nullable=True)
    previous_document: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    healthy_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # When it was judged failed; kept when the device is then reverted, so a
    # rolled-back rollout still counts the failures that stopped it.
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditRow(Base):
    """One entry of the audit trail: who (`user:…`, `token:…`, `admin`,
    `device:…` or `hub`), from where, did what to which target, and how it
    ended (`ok`, `refused`, `failed`).

    Append-only and chained: `hash` covers the entry's fields and `prev_hash`,
    the hash of entry `seq - 1` (see fogline.security.entry_hash); `seq` has
    no gaps. `AuditHeadRow` holds the last entry's seq and hash.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        UniqueConstraint("seq", name="uq_audit_log_seq"),
    )
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The audit chain's head (a single row, id=1): the last entry's seq and hash.

    Every append updates this row first, in the appending transaction: the
    row lock (PostgreSQL) or the write lock (SQLite) makes concurrent
    appenders, also in other hub replicas, take turns, so the chain never forks.
    """

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class TufMetadataRow(Base):
    """One version of one TUF role's metadata, the bytes as signed (see hub/_tuf.py).

    Every version is kept: nodes fetch `<version>.<role>.json` (consistent
    snapshots), and walk root versions one by one.
    """

    __tablename__ = "tuf_metadata"
    role: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    expires: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ReleaseSbomRow(Base):
    """A release's CycloneDX SBOM, read from its signed archive at push (0021)."""

    __tablename__ = "release_sboms"
    release_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True
    )
    document: Mapped[str] = mapped_column(Text)  # the JSON as signed
    files: Mapped[int] = mapped_column(Integer)
    components: Mapped[int] = mapped_column(Integer)


class ReleaseComponentRow(Base):
    """A package a release's SBOM names, by OSV ecosystem and name (0021)."""

    __tablename__ = "release_components"
    __table_args__ = (Index("ix_release_components_package", "ecosystem", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    release_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("releases.id", ondelete="CASCADE"), index=True
    )
    ecosystem: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(214))
    version: Mapped[str] = mapped_column(String(128))
    purl: Mapped[str] = mapped_column(String(512))


class VulnImportRow(Base):
    """One `fogline vulndb import`: what came in, from which file, when (0021)."""

    __tablename__ = "vuln_imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(255))
    imported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    imported_by: Mapped[str] = mapped_column(String(64))
    advisories: Mapped[int] = mapped_column(Integer)  # in the file
    stored: Mapped[int] = mapped_column(Integer)  # new or newer than the hub's copy
    ecosystems: Mapped[dict[str, int]] = mapped_column(JSON)  # advisories per ecosystem
    newest_modified: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class VulnAdvisoryRow(Base):
    """An OSV advisory, the newest `modified` the hub was given (0021)."""

    __tablename__ = "vuln_advisories"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    modified: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    published: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdrawn: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    summary: Mapped[str] = mapped_column(String(500))
    score: Mapped[float | None] = mapped_column(Float, nullable=True)  # CVSS base score
    document: Mapped[dict[str, Any]] = mapped_column(JSON)  # the OSV entry as published
    import_id: Mapped[int] = mapped_column(Integer)


class VulnPackageRow(Base):
    """A package an advisory names, by OSV ecosystem and normalised name (0021)."""

    __tablename__ = "vuln_packages"
    __table_args__ = (Index("ix_vuln_packages_package", "ecosystem", "name"),)
    advisory_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("vuln_advisories.id", ondelete="CASCADE"), primary_key=True
    )
    ecosystem: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(512), primary_key=True)


class VulnPolicyRow(Base):
    """An applied `VulnerabilityPolicy` manifest (0021)."""

    __tablename__ = "vuln_policies"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    applied_by: Mapped[str] = mapped_column(String(64))
