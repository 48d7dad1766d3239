"""Migration 0011 (users; tokens gain a user, an expiry and a last use) keeps
the bootstrap admin token working, and downgrades, on SQLite and PostgreSQL;
a user's actor name fits the columns that store it."""

import re

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from fogline.hub import make_engine
from fogline.hub._clock import utcnow
from fogline.hub._db import MIGRATIONS_DIR, make_session_factory
from fogline.hub._people import authenticate, principal_name
from fogline.hub._schema import AuditRow, DeploymentRow, ReleaseRow, RolloutRow
from fogline.hub._tokens import ensure_admin_token
from fogline.protocol import PRINCIPAL_NAME_PATTERN
from fogline.security import ADMIN_PREFIX


def _migrate(engine, step, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_0011_keeps_the_admin_token_and_downgrades_cleanly(engine) -> None:
    _migrate(engine, command.upgrade, "0010")
    # A token row as 0010 knew it: the columns 0011 adds do not exist yet.
    with engine.begin() as connection:
        assert "user_name" not in {c["name"] for c in inspect(connection).get_columns("tokens")}
    _migrate(engine, command.upgrade, "0011")
    sessions = make_session_factory(engine)
    with sessions() as session, session.begin():
        token = ensure_admin_token(session, ADMIN_PREFIX)
    assert token is not None
    with sessions() as session:
        principal = authenticate(session, token.token, utcnow())
    assert (principal.name, principal.role, principal.user) == ("admin", "admin", None)

    _migrate(engine, command.downgrade, "0010")
    with engine.begin() as connection:
        tables = inspect(connection).get_table_names()
        columns = {c["name"] for c in inspect(connection).get_columns("tokens")}
    assert "users" not in tables
    assert not columns & {"user_name", "expires_at", "last_used_at", "created_by"}
    _migrate(engine, command.upgrade, "0011")  # and up again


def test_the_longest_user_name_fits_the_actor_columns() -> None:
    longest = "a" * 58
    assert re.fullmatch(PRINCIPAL_NAME_PATTERN, longest)
    assert not re.fullmatch(PRINCIPAL_NAME_PATTERN, longest + "a")
    actor = principal_name(longest, "laptop")
    for column in (
        AuditRow.actor,
        DeploymentRow.applied_by,
        ReleaseRow.pushed_by,
        RolloutRow.created_by,
    ):
        assert len(actor) <= column.type.length, column
