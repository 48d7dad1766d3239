"""Shared fixtures: real hub and agent processes on 127.0.0.1, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, start_broker
from tests.support.postgres import PostgresMissingError, create_database, throwaway_postgres
from tests.support.processes import RUNNING, HubProcess, start_hub, stop_leftovers

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """A test that fails halfway must not leave agents or hubs running."""
    before = set(RUNNING)
    yield
    stop_leftovers(keep=before)


@pytest.fixture(autouse=True)
def _default_event_loop_policy() -> Iterator[None]:
    """A test must not leave its event loop policy to the next one.

    An in-process uvicorn with `loop="uvloop"` installs uvloop's policy for the
    whole worker; uvloop refuses `umask=` in subprocess_exec, so every module
    the supervisor started afterwards in that worker failed to start.
    """
    yield
    if not isinstance(asyncio.get_event_loop_policy(), asyncio.DefaultEventLoopPolicy):
        asyncio.set_event_loop_policy(None)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A fresh hub (SQLite) for one test."""
    process = start_hub(tmp_path / "hub")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub for a module whose tests do not disturb each other."""
    process = start_hub(tmp_path_factory.mktemp("hub") / "hub")
    try:
        yield process
    finally:
        process.stop()


# -- PostgreSQL: a throwaway cluster per test session ------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL as the `postgres` user in a temp dir; yield a base URL."""
    try:
        with throwaway_postgres() as url:
            yield url
    except PostgresMissingError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's PostgreSQL."""
    return create_database(postgres_server, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a storage test against SQLite and against a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Mosquitto for the module's tests."""
    started = start_broker(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield started
    finally:
        started.stop()
