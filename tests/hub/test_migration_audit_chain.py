"""Migration 0012 chains the audit entries written before it, on SQLite and PostgreSQL."""

import datetime as dt
import json

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from fogline.hub import make_engine
from fogline.hub._audit import AuditQuery, list_audit, record_audit
from fogline.hub._db import MIGRATIONS_DIR, make_session_factory
from fogline.security import ChainEntry, ChainVerifier, at_text

T0 = dt.datetime(2030, 1, 1, 12, 0, 0, 123456)


def _migrate(engine, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def _entries(session) -> list[ChainEntry]:
    rows = list_audit(session, AuditQuery(after=0))
    return [
        ChainEntry(
            seq=r.seq,
            at=at_text(r.at),
            actor=r.actor,
            source=r.source,
            action=r.action,
            target=r.target,
            outcome=r.outcome,
            detail=r.detail,
            prev_hash=r.prev_hash,
            hash=r.hash,
        )
        for r in rows
    ]


def test_0012_chains_old_entries_and_new_ones_follow_them(db_url):
    engine = make_engine(db_url)
    try:
        _migrate(engine, "0011")
        with engine.begin() as connection:
            for n, action in enumerate(["apply", "rollout.start", "delete"]):
                connection.execute(
                    text(
                        "INSERT INTO audit_log (at, actor, action, target, detail)"
                        " VALUES (:at, 'ops', :action, :target, :detail)"
                    ),
                    {
                        "at": T0 + dt.timedelta(seconds=n),
                        "action": action,
                        "target": f"t{n}",
                        "detail": json.dumps({"n": n, "nested": {"b": 1, "a": [1.5, None]}}),
                    },
                )
        _migrate(engine, "head")
        sessions = make_session_factory(engine)
        with sessions() as session:
            record_audit(session, "admin", "claim.create", "after-upgrade")
            session.commit()
        with sessions() as session:
            entries = _entries(session)
        assert [e.seq for e in entries] == [1, 2, 3, 4]
        assert [e.action for e in entries] == ["apply", "rollout.start", "delete", "claim.create"]
        verifier = ChainVerifier()
        assert all(verifier.feed(entry) is None for entry in entries)
        with engine.connect() as connection:
            head = connection.execute(text("SELECT seq, hash FROM audit_head")).one()
        assert verifier.check_head(head.seq, head.hash) is None
        _migrate(engine, "0011", down=True)  # and back: the old columns only
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar() == 4
    finally:
        engine.dispose()
