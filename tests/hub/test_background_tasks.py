"""The hub's background loops outlive a failed pass.

They share the app's lifespan task group: one that raised would cancel the
report writer, the long-poll watcher and the rollout scheduler with it,
while the server went on answering requests (seen with a 10,000-device
apply holding SQLite's write lock past its busy timeout).
"""

import asyncio

import pytest
from sqlalchemy.exc import OperationalError

import fogline.hub._app as app_module
from fogline.hub import HubState, make_engine, upgrade_schema
from fogline.hub._app import retention_forever
from fogline.hub._db import make_session_factory
from fogline.security import CertificateAuthority
from tests.support.processes import wait_until_async


@pytest.fixture
def state(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade_schema(engine)
    yield HubState(
        engine, make_session_factory(engine), CertificateAuthority.load_or_create(tmp_path)
    )
    engine.dispose()


def test_retention_goes_on_after_a_pass_fails(state, monkeypatch, caplog):
    real = app_module.apply_retention
    calls: list[str] = []

    def locked_once(engine, retention_s):
        calls.append("call")
        if len(calls) == 1:
            raise OperationalError("DELETE FROM telemetry", {}, Exception("database is locked"))
        return real(engine, retention_s)

    monkeypatch.setattr(app_module, "apply_retention", locked_once)

    async def scenario() -> None:
        task = asyncio.create_task(retention_forever(state, interval_s=0.02))
        await wait_until_async(lambda: len(calls) >= 3 or task.done(), 10, "three passes", 0.01)
        assert not task.done()  # still running after the failure
        task.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(calls) >= 3
    assert "telemetry.retention_failed" in caplog.text
