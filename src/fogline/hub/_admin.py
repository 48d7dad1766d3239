"""The bootstrap admin token: created at the hub's first start, replaced by
`fogline hub rotate-admin-token`, and kept only in DATA_DIR/admin-token (0600).

It is never printed: service managers keep a daemon's stdout in their logs,
and a token in a log is a token anyone with the logs holds. The hub logs the
file's path instead.

FoglineError
  AdminTokenError   no hub here to rotate a token for, or its database failed
"""

from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fogline._errors import FoglineError
from fogline.security import ADMIN_PREFIX

from ._audit import HUB_ACTOR, record_audit
from ._datadir import ADMIN_TOKEN_FILE, save_admin_token
from ._db import make_engine, sqlite_url
from ._tokens import BOOTSTRAP_ADMIN, rotate_admin_token

ROTATED_BY = "fogline hub rotate-admin-token"


class AdminTokenError(FoglineError):
    """No hub data directory or database to rotate the admin token in."""


def rotate_admin_token_file(data_dir: Path, db_url: str | None = None) -> Path:
    """Revoke the admin token in the hub's database, create a new one and write
    it to DATA_DIR/admin-token; returns that path. Safe while the hub runs.

    The file is written before the transaction commits: when it cannot be
    written, the old token stays valid instead of nobody holding a valid one.

    Raises:
        AdminTokenError: DATA_DIR or its SQLite database is missing, the
            database holds no admin token yet, or the database failed.
    """
    if not data_dir.is_dir():
        raise AdminTokenError(f"{data_dir}: no such hub data directory")
    if db_url is None:
        if not (data_dir / "hub.db").is_file():
            raise AdminTokenError(
                f"{data_dir}: no hub database (hub.db); pass --db for PostgreSQL, "
                "or start the hub once first"
            )
        db_url = sqlite_url(data_dir)
    path = data_dir / ADMIN_TOKEN_FILE
    engine = make_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            token = rotate_admin_token(session, ADMIN_PREFIX)
            if token is None:
                raise AdminTokenError("the database holds no admin token yet: start the hub once")
            # Run on the hub's machine, by whoever can read its database.
            record_audit(
                session,
                HUB_ACTOR,
                "admin_token.rotate",
                BOOTSTRAP_ADMIN,
                source="local",
                command=ROTATED_BY,
            )
            save_admin_token(path, token.token)
    except SQLAlchemyError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise AdminTokenError(f"hub database: {type(exc).__name__}: {first_line}") from exc
    finally:
        engine.dispose()
    return path
