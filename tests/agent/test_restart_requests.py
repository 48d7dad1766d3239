"""A restart the hub asks for (DesiredModule.restart_generation) on the node:
the supervisor restarts the module once (a new process, not counted as a
crash), and the ledger on disk keeps a request from being honoured twice,
also by a new agent process on the same data dir."""

import asyncio
import json
from pathlib import Path

import pytest

from fogline.agent.modules._restarts import RestartLedger
from fogline.agent.supervisor import MemoryRuntime, Supervisor, UnknownModuleError
from tests.agent.supervisor._support import async_test, make_spec, status_where, supervising


@async_test
async def test_a_restart_gives_the_module_a_new_process_and_is_not_a_crash(tmp_path: Path) -> None:
    sup = Supervisor(MemoryRuntime(), tmp_path / "logs", min_stable_s=0.2)
    async with supervising(sup):
        await sup.apply({"mod": make_spec("mod", tmp_path / "w")})
        first = await status_where(sup, "mod", lambda s: s.state == "healthy", "healthy")
        assert await sup.restart("mod") is True
        again = await status_where(
            sup, "mod", lambda s: s.pid not in (None, first.pid), "a new process"
        )
        assert again.restarts == 0
        await status_where(sup, "mod", lambda s: s.state == "healthy", "healthy again")
        with pytest.raises(UnknownModuleError):
            await sup.restart("nope")
        await sup.stop("mod")
        # Stopped on purpose: a restart request does not bring it back.
        assert await sup.restart("mod") is False
        assert sup.statuses()["mod"].state == "stopped"


def test_the_ledger_survives_a_new_process_and_bounds_its_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "restarts.json"
    ledger = RestartLedger(path)
    assert ledger.honoured("web") == 0
    ledger.note("web", 3)
    assert RestartLedger(path).honoured("web") == 3  # what the next agent run reads
    assert path.stat().st_mode & 0o777 == 0o600
    # Damaged: read as empty, never an error (at worst one restart more).
    path.write_text("{not json")
    assert RestartLedger(path).honoured("web") == 0
    path.write_text(json.dumps({"web": "3", "api": -1, "db": True, "ok": 2}))
    assert RestartLedger(path).all() == {"ok": 2}


def test_a_request_is_honoured_once_across_applies(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from fogline.agent.modules._manager import ModuleManager

    restarted: list[str] = []
    # What a report made during the restart would say the module honoured.
    reported_meanwhile: list[int] = []

    class Sup:
        async def restart(self, name: str) -> bool:
            restarted.append(name)
            reported_meanwhile.append(manager._restarting[name])
            return True

    manager = SimpleNamespace(
        restarts=RestartLedger(tmp_path / "restarts.json"),
        activator=SimpleNamespace(desired={"web": object()}),
        supervisor=Sup(),
        _restarting={},
    )
    manager._restart = lambda name, wanted: ModuleManager._restart(manager, name, wanted)  # type: ignore[arg-type]
    doc = SimpleNamespace(modules=[SimpleNamespace(name="web", restart_generation=1)])
    honour = ModuleManager._honour_restarts
    asyncio.run(honour(manager, doc))  # type: ignore[arg-type]
    asyncio.run(honour(manager, doc))  # type: ignore[arg-type]  # the same document again
    manager.restarts = RestartLedger(tmp_path / "restarts.json")  # a new agent process
    asyncio.run(honour(manager, doc))  # type: ignore[arg-type]
    assert restarted == ["web"]
    doc.modules[0].restart_generation = 2  # the hub asks again
    asyncio.run(honour(manager, doc))  # type: ignore[arg-type]
    assert restarted == ["web", "web"]
    # The ledger is written before the restart, but until the new process is
    # up a report says the generation honoured before (the hub waits on it).
    assert reported_meanwhile == [0, 1]
    assert manager._restarting == {}
