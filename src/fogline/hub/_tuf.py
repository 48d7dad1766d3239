"""The hub's TUF repository: store uploaded metadata, sign snapshot and timestamp.

Operators upload `root` and `targets` (signed offline, `fogline tuf push`)
and the module roles `module-<name>` (signed by release keys, `fogline
release push`). The hub checks each upload against the metadata it already
trusts (a threshold of the delegator's keys, a version above the current
one, paths inside the delegation) and refuses it with the role and the
reason; the node checks it all again through python-tuf, so the checks
here are for a clear error at push time, not for the node's safety.

After every accepted upload the hub signs a new snapshot (the versions of
targets and of every module role) and a new timestamp with its online key
(DATA/tuf-online-key.pem, 0600), and it signs a new timestamp when the
current one has lived half its time, on the request that notices: no timer,
so every replica (sharing the database and the key file) does the same.

The online key can only vouch for which versions are current: a hub whose
key and database are stolen cannot add a target, since targets and module
roles need the offline and release keys.

Serving: a stored version of a role is never changed or deleted, so each
process keeps the bytes of the versions it served (`MetadataCache`, keyed
by role and version, bounded). Every ngclient refresh asks for
`timestamp.json`, which is looked up in the database on each request (its
version and expiry, two columns): a new timestamp, signed by any replica
after an upload or a renewal, is served at once, and through it the new
snapshot, targets and module versions, each read once. A missing version
(the `<N+1>.root.json` probe of every refresh) is never cached.
"""

import datetime as dt
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from securesystemslib.signer import CryptoSigner
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp

from fogline._log import event
from fogline.artifact import (
    ReleaseKeyError,
    generate_release_key,
    load_private_key,
    public_key_pem,
)
from fogline.tuf import (
    MODULE_ROLE_PREFIX,
    ROLE_RE,
    ROOT,
    SNAPSHOT,
    TARGETS,
    TIMESTAMP,
    TufMetadataError,
    load_signer,
    parse,
    to_bytes,
    verify_signed_by,
)

from ._errors import BadRequestError, ConflictError, NotFoundError
from ._schema import TufMetadataRow

log = logging.getLogger("fogline.hub.tuf")

ONLINE_KEY_FILE: Final = "tuf-online-key.pem"
_FILENAME_RE: Final = re.compile(rf"(?:(\d{{1,9}})\.)?({ROLE_RE.pattern})\.json", re.ASCII)


@dataclass(frozen=True, slots=True)
class TufSettings:
    """Lifetimes of what the hub signs online; the timestamp is renewed at half its life."""

    timestamp_ttl_s: float = 86400.0
    snapshot_ttl_s: float = 7 * 86400.0
    # False: never renew a timestamp (a stale hub, for the freeze-attack test).
    renew: bool = True


@dataclass(frozen=True, slots=True)
class OnlineKey:
    """The hub's snapshot and timestamp key, created on first use."""

    path: Path

    def signer(self) -> CryptoSigner:
        """The key, created (0600) when the hub signs for the first time.

        Raises:
            TufKeyError: the file exists but is not an Ed25519 key.
        """
        if not self.path.exists():
            try:
                generate_release_key().write_private_key(self.path)
                event(log, "tuf.online_key_created", path=str(self.path))
            except ReleaseKeyError:
                pass  # another request or replica created it just now
        return load_signer(self.path)

    def public_pem(self) -> str:
        self.signer()
        return public_key_pem(load_private_key(self.path).public_key)


# -- reading ---------------------------------------------------------------------------


@dataclass(slots=True)
class MetadataCache:
    """The bytes of stored (role, version)s this process has served, the most
    recently used `max_entries`. Safe without invalidation: a stored version
    is never rewritten (uploads and signing only add versions above the
    newest), and what is not stored is never put here."""

    max_entries: int = 256
    _bodies: OrderedDict[tuple[str, int], bytes] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, role: str, version: int) -> bytes | None:
        with self._lock:
            body = self._bodies.get((role, version))
            if body is not None:
                self._bodies.move_to_end((role, version))
            return body

    def put(self, role: str, version: int, body: bytes) -> None:
        with self._lock:
            self._bodies[(role, version)] = body
            self._bodies.move_to_end((role, version))
            while len(self._bodies) > self.max_entries:
                self._bodies.popitem(last=False)

    def __len__(self) -> int:
        return len(self._bodies)


def latest(session: Session, role: str) -> TufMetadataRow | None:
    return session.scalars(
        select(TufMetadataRow)
        .where(TufMetadataRow.role == role)
        .order_by(TufMetadataRow.version.desc())
        .limit(1)
    ).first()


@dataclass(frozen=True, slots=True)
class _Head:
    version: int
    expires: dt.datetime


def _head(session: Session, role: str) -> _Head | None:
    """The newest version of `role` and its expiry, without its bytes."""
    row = session.execute(_HEAD, {"role": role}).first()
    return None if row is None else _Head(row.version, row.expires)


# Built once: constructing a SELECT costs more than SQLite running it.
_HEAD: Final = (
    select(TufMetadataRow.version, TufMetadataRow.expires)
    .where(TufMetadataRow.role == bindparam("role"))
    .order_by(TufMetadataRow.version.desc())
    .limit(1)
)
_BODY: Final = select(TufMetadataRow.body).where(
    TufMetadataRow.role == bindparam("role"), TufMetadataRow.version == bindparam("version")
)


def _body(session: Session, cache: MetadataCache, role: str, version: int) -> bytes | None:
    body = cache.get(role, version)
    if body is None:
        body = session.execute(_BODY, {"role": role, "version": version}).scalar_one_or_none()
        if body is not None:
            cache.put(role, version, body)
    return body


def trusted_root(session: Session) -> bytes | None:
    """The newest root (what an enrolling node pins), or None: TUF is not set up."""
    row = latest(session, ROOT)
    return None if row is None else row.body


def metadata_file(
    session: Session,
    key: OnlineKey,
    settings: TufSettings,
    filename: str,
    now: dt.datetime,
    cache: MetadataCache | None = None,
) -> bytes:
    """The bytes of `filename` as ngclient asks for it: `timestamp.json`, or
    `<version>.<role>.json`; `<role>.json` is the newest (for operators).
    Versions are read through `cache` (see MetadataCache); which version is
    the newest is read from the database on every call.

    Raises:
        NotFoundError: no such role or version.
    """
    match = _FILENAME_RE.fullmatch(filename)
    if match is None:
        raise NotFoundError(f"no TUF metadata {filename[:100]!r}")
    version, role = match.group(1), match.group(2)
    if version is None and role == TIMESTAMP:
        renew_timestamp(session, key, settings, now)
    if version is None:
        head = _head(session, role)
        number = None if head is None else head.version
    else:
        number = int(version)
    body = None if number is None else _body(session, cache or MetadataCache(), role, number)
    if body is None:
        raise NotFoundError(f"no TUF metadata {filename!r}")
    return body


# -- uploads -------------------------------------------------------------------------


def upload(
    session: Session,
    key: OnlineKey,
    settings: TufSettings,
    role: str,
    data: bytes,
    now: dt.datetime,
) -> tuple[int, bool]:
    """Check and store an uploaded version of `role`, then sign a new snapshot
    and timestamp. Returns (version, created); the same bytes again is a no-op.

    Raises:
        BadRequestError: malformed, unsigned, expired, outside its delegation.
        ConflictError: the version is not above the stored one.
    """
    if not ROLE_RE.fullmatch(role) or role in (SNAPSHOT, TIMESTAMP):
        raise BadRequestError(
            f"role must be root, targets or module-<name>, got {role[:80]!r} "
            "(the hub signs snapshot and timestamp itself)",
            field="role",
        )
    try:
        md, kind = _checked(session, key, role, data, now)
    except TufMetadataError as exc:
        raise BadRequestError(str(exc), field="metadata") from None
    current = latest(session, role)
    if current is not None:
        if current.version == md.signed.version and current.body == data:
            return current.version, False
        if md.signed.version <= current.version:
            raise ConflictError(
                f"TUF {role} metadata: version {md.signed.version} is not above "
                f"the hub's {current.version}",
                field="version",
            )
    session.add(
        TufMetadataRow(
            role=role,
            version=md.signed.version,
            body=data,
            expires=md.signed.expires,
            created_at=now,
        )
    )
    session.flush()
    if kind is not Root or latest(session, TARGETS) is not None:
        _sign_snapshot(session, key.signer(), settings, now)
    event(log, "tuf.uploaded", role=role, version=md.signed.version)
    return md.signed.version, True


def _checked(
    session: Session, key: OnlineKey, role: str, data: bytes, now: dt.datetime
) -> tuple[Metadata[Any], type[Any]]:
    if role == ROOT:
        root = parse(ROOT, data, Root)
        _check_root(session, key, root)
        kind: type[Any] = Root
        md: Metadata[Any] = root
    else:
        md = parse(role, data, Targets)
        kind = Targets
        if role == TARGETS:
            trusted = _trusted(session, ROOT, Root)
            verify_signed_by(trusted, TARGETS, md)
            for name in (md.signed.delegations.roles or {}) if md.signed.delegations else ():
                if not name.startswith(MODULE_ROLE_PREFIX) or not ROLE_RE.fullmatch(name):
                    raise TufMetadataError(
                        TARGETS, f"delegates to {name[:80]!r}: not module-<name>"
                    )
        else:
            targets = _trusted(session, TARGETS, Targets)
            delegations = targets.signed.delegations
            delegated = (delegations.roles or {}).get(role) if delegations else None
            if delegated is None:
                raise TufMetadataError(
                    role, "targets does not delegate this role (fogline tuf delegate, then push)"
                )
            verify_signed_by(targets, role, md)
            for path in md.signed.targets:
                if not delegated.is_delegated_path(path):
                    raise TufMetadataError(role, f"lists {path[:120]!r}, outside {delegated.paths}")
    if md.signed.is_expired(now):
        raise TufMetadataError(role, f"expired at {md.signed.expires.isoformat()}")
    return md, kind


def _check_root(session: Session, key: OnlineKey, root: Metadata[Root]) -> None:
    current = latest(session, ROOT)
    if current is None:
        if root.signed.version != 1:
            raise TufMetadataError(
                ROOT, f"the first root must be version 1, got {root.signed.version}"
            )
    else:
        trusted = parse(ROOT, current.body, Root)
        if root.signed.version != trusted.signed.version + 1:
            raise TufMetadataError(
                ROOT,
                f"version {root.signed.version} does not follow the hub's {trusted.signed.version}",
            )
        verify_signed_by(trusted, ROOT, root)  # a threshold of the old keys
    verify_signed_by(root, ROOT, root)  # and of the new ones
    if not root.signed.consistent_snapshot:
        raise TufMetadataError(ROOT, "consistent_snapshot must be true")
    online = key.signer().public_key.keyid
    for role in (SNAPSHOT, TIMESTAMP):
        keyids = root.signed.roles[role].keyids
        if keyids != [online]:
            raise TufMetadataError(
                ROOT,
                f"{role} keys are {keyids}, this hub's online key is {online} "
                "(fogline tuf online-key)",
            )


def _trusted(session: Session, role: str, kind: type[Any]) -> Metadata[Any]:
    row = latest(session, role)
    if row is None:
        raise TufMetadataError(role, "the hub has none yet: run fogline tuf push first")
    return parse(role, row.body, kind)


# -- online signing --------------------------------------------------------------------


def _sign_snapshot(
    session: Session, signer: CryptoSigner, settings: TufSettings, now: dt.datetime
) -> None:
    targets_row = latest(session, TARGETS)
    if targets_row is None:
        return
    targets = parse(TARGETS, targets_row.body, Targets)
    meta = {f"{TARGETS}.json": MetaFile(version=targets_row.version)}
    delegations = targets.signed.delegations
    for name in sorted((delegations.roles or {}) if delegations else ()):
        row = latest(session, name)
        if row is not None:
            meta[f"{name}.json"] = MetaFile(version=row.version)
    previous = latest(session, SNAPSHOT)
    snapshot = Snapshot(
        version=(previous.version + 1) if previous else 1,
        expires=now + dt.timedelta(seconds=settings.snapshot_ttl_s),
        meta=meta,
    )
    _store(session, SNAPSHOT, Metadata(snapshot), signer, now)
    _sign_timestamp(session, signer, settings, now)


def _sign_timestamp(
    session: Session, signer: CryptoSigner, settings: TufSettings, now: dt.datetime
) -> None:
    snapshot = latest(session, SNAPSHOT)
    if snapshot is None:
        return
    previous = latest(session, TIMESTAMP)
    timestamp = Timestamp(
        version=(previous.version + 1) if previous else 1,
        expires=now + dt.timedelta(seconds=settings.timestamp_ttl_s),
        snapshot_meta=MetaFile(version=snapshot.version),
    )
    _store(session, TIMESTAMP, Metadata(timestamp), signer, now)


def _store(
    session: Session, role: str, md: Metadata[Any], signer: CryptoSigner, now: dt.datetime
) -> None:
    md.signed.expires = md.signed.expires.replace(microsecond=0)
    md.sign(signer)
    session.add(
        TufMetadataRow(
            role=role,
            version=md.signed.version,
            body=to_bytes(md),
            expires=md.signed.expires,
            created_at=now,
        )
    )
    session.flush()


def renew_timestamp(
    session: Session, key: OnlineKey, settings: TufSettings, now: dt.datetime
) -> None:
    """Sign a new snapshot or timestamp when the current one has lived half its
    time (commits on its own; another replica doing the same wins harmlessly)."""
    if not settings.renew:
        return
    snapshot = _head(session, SNAPSHOT)
    timestamp = _head(session, TIMESTAMP)
    if snapshot is None or timestamp is None:
        return
    snapshot_due = snapshot.expires - now < dt.timedelta(seconds=settings.snapshot_ttl_s / 2)
    timestamp_due = timestamp.expires - now < dt.timedelta(seconds=settings.timestamp_ttl_s / 2)
    if not (snapshot_due or timestamp_due):
        return
    try:
        if snapshot_due:
            _sign_snapshot(session, key.signer(), settings, now)
        else:
            _sign_timestamp(session, key.signer(), settings, now)
        session.commit()
    except IntegrityError:
        session.rollback()  # another request or replica signed this version first
