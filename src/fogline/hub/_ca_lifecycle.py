"""`fogline ca rotate` and `fogline ca retire-old`: the fleet CA's lifecycle,
run beside a running hub on its data directory and database.

    rotate       a new CA issues from now on; DIR/ca.pem (the trust bundle)
                 holds the new CA and the previous one, so the hub accepts
                 client certificates of both and hands both to devices; the
                 hub's own certificate stays from the previous CA, which the
                 devices that have not renewed yet still check it against
    retire-old   once every online device renewed onto the new CA: the bundle
                 holds the new CA alone, and the hub's certificate is issued
                 again from it; running hubs reload both for new connections

FoglineError
  CaLifecycleError   no hub here, a rotation already (or not) in progress,
                     devices not moved yet, the CA key cannot be opened, or
                     the database failed
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fogline._errors import FoglineError
from fogline.security import CaKeyError, CertificateAuthority, ca_key_id, read_trust_bundle

from ._audit import record_audit
from ._clock import utcnow
from ._datadir import HubFiles, reissue_server_cert
from ._db import make_engine, sqlite_url
from ._schema import DeviceRow

ACTOR = "hub"  # a local command on the hub host, as rotate-admin-token and backup


class CaLifecycleError(FoglineError):
    """The CA cannot be rotated or retired now; the message says why."""


@dataclass(frozen=True, slots=True)
class Straggler:
    """A device whose certificate the CA being retired issued."""

    name: str
    device_id: str
    online: bool
    last_seen: dt.datetime | None


@dataclass(frozen=True, slots=True)
class RetireResult:
    retired: bool
    # Devices not on the new CA: those online block retiring (unless
    # forced); those offline will need a claim to come back.
    stragglers: Sequence[Straggler]


def _db_url(data_dir: Path, db_url: str | None) -> str:
    if not (data_dir / CertificateAuthority.CERT_FILE).is_file():
        raise CaLifecycleError(f"{data_dir}: no hub data directory (no ca.pem)")
    if db_url is not None:
        return db_url
    if not (data_dir / "hub.db").is_file():
        raise CaLifecycleError(f"{data_dir}: no hub database (hub.db); pass --db for PostgreSQL")
    return sqlite_url(data_dir)


def rotate_ca(data_dir: Path, db_url: str | None, passphrase: bytes | None) -> str:
    """Create the new CA and start the overlap; returns its key id.

    Raises:
        CaLifecycleError: see the module's docstring.
    """
    url = _db_url(data_dir, db_url)
    try:
        old = CertificateAuthority.load_or_create(data_dir, passphrase=passphrase)
        new = CertificateAuthority.rotate(data_dir, passphrase=passphrase)
    except CaKeyError as exc:
        raise CaLifecycleError(str(exc)) from exc
    _audit(url, "ca.rotate", new.key_id, previous_ca=old.key_id)
    return new.key_id


def retire_old_ca(
    data_dir: Path,
    db_url: str | None,
    passphrase: bytes | None,
    *,
    online_within: dt.timedelta,
    force: bool = False,
) -> RetireResult:
    """End the overlap when no online device still holds a certificate of
    the previous CA (or `force`); the result lists those that do.

    Raises:
        CaLifecycleError: see the module's docstring.
    """
    url = _db_url(data_dir, db_url)
    bundle = read_trust_bundle(data_dir / CertificateAuthority.CERT_FILE)
    if len(bundle) < 2:
        raise CaLifecycleError("no CA rotation in progress: nothing to retire")
    current = ca_key_id(bundle[0])
    stragglers = _stragglers(url, current, online_within)
    if any(s.online for s in stragglers) and not force:
        return RetireResult(False, stragglers)
    try:
        ca = CertificateAuthority.load_or_create(data_dir, passphrase=passphrase)
    except CaKeyError as exc:
        raise CaLifecycleError(str(exc)) from exc
    # The hub's certificate first: every device that matters trusts the new
    # CA already (its bundle holds both), then the old CA leaves the bundle.
    reissue_server_cert(HubFiles(data_dir, ca, passphrase), ca)
    retired = CertificateAuthority.retire_previous(data_dir)
    _audit(
        url,
        "ca.retire_old",
        current,
        retired=[ca_key_id(cert) for cert in retired],
        forced=force,
        not_moved=[s.name for s in stragglers],
    )
    return RetireResult(True, stragglers)


def _stragglers(url: str, current: str, online_within: dt.timedelta) -> list[Straggler]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(DeviceRow.name, DeviceRow.id, DeviceRow.last_seen, DeviceRow.cert_ca_key_id)
                .where(DeviceRow.revoked_at.is_(None))
                .order_by(DeviceRow.name)
            ).all()
    except SQLAlchemyError as exc:
        raise CaLifecycleError(f"hub database: {type(exc).__name__}") from exc
    finally:
        engine.dispose()
    now = utcnow()
    return [
        Straggler(
            row.name,
            row.id,
            row.last_seen is not None and now - row.last_seen <= online_within,
            row.last_seen,
        )
        for row in rows
        if row.cert_ca_key_id != current
    ]


def _audit(url: str, action: str, target: str, **detail: Any) -> None:
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            record_audit(session, ACTOR, action, target, source="local", **detail)
    except SQLAlchemyError as exc:
        raise CaLifecycleError(f"hub database: {type(exc).__name__}") from exc
    finally:
        engine.dispose()
