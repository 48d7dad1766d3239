"""A virtual fleet against a real hub: enrollment, sync, reports, crashes, power cuts."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fogline.agent.updater import State
from fogline.sim import Faults, FleetConfig, FleetStats, VirtualFleet, parse_faults
from tests.sim.helpers import (
    apply,
    create_claim,
    deployment,
    fleet_claim,
    push_release,
    sim_devices,
)
from tests.support.processes import HubProcess, process_alive, wait_until, wait_until_async


def make_fleet(
    hub: HubProcess, work: Path, prefix: str, devices: int, faults: Faults
) -> VirtualFleet:
    claim = fleet_claim(hub, devices, prefix)
    return VirtualFleet(
        FleetConfig(
            hub_url=hub.url,
            ca_path=hub.ca,
            claim=claim,
            devices=devices,
            data_dir=work / "fleet",
            labels={"asked": prefix},
            faults=faults,
            prefix=prefix,
            seed=7,
        )
    )


def in_sync(hub: HubProcess, prefix: str, devices: int) -> bool:
    rows = sim_devices(hub, prefix)
    return len(rows) == devices and all(
        row["sync"] and row["sync"]["status"] == "in-sync" for row in rows
    )


def test_a_fleet_enrolls_syncs_a_config_change_and_reports_it(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub, prefix = shared_hub, "sync"
    fleet = make_fleet(hub, tmp_path, prefix, 8, Faults())

    async def scenario() -> FleetStats:
        stop = asyncio.Event()
        running = asyncio.create_task(fleet.run(stop=stop))
        try:
            await wait_until_async(
                lambda: in_sync(hub, prefix, 8), 30, "8 enrolled nodes in sync", 0.2, in_thread=True
            )
            await apply(hub, deployment(prefix, config="{rate_hz: 5}"))
            await wait_until_async(
                lambda: (
                    all(n.applied and n.applied.ok for n in fleet.nodes)
                    and len({n.stats.applied_revision for n in fleet.nodes}) == 1
                    and in_sync(hub, prefix, 8)
                ),
                30,
                "the change applied and reported by every node",
                0.2,
                in_thread=True,
            )
        finally:
            stop.set()
        return await running

    stats = asyncio.run(scenario())
    assert stats.nodes == stats.enrolled == 8 and stats.errors == []
    assert list(stats.applied.values()) == [8]  # one revision, on every node
    assert stats.reports_ok >= 16 and stats.traffic.http_bytes > 0
    for node in fleet.nodes:  # the real ConfigApplier wrote the node's config file
        assert json.loads((node.data_dir / "config" / "config.json").read_text()) == {"rate_hz": 5}
        assert (node.data_dir / "identity" / "key.pem").stat().st_mode & 0o777 == 0o600
    rows = sim_devices(hub, prefix)
    assert sorted(r["name"] for r in rows) == [f"sim-{prefix}-{i}" for i in range(8)]
    assert all(r["labels"]["sim"] == "true" and r["labels"]["test"] == prefix for r in rows)
    # What the nodes asked for is shown apart, not selected on.
    assert all(r["reported_labels"] == {"asked": prefix, "sim": "true"} for r in rows)


def test_crashed_nodes_restart_from_disk_without_enrolling_again(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub, prefix = shared_hub, "crash"
    fleet = make_fleet(hub, tmp_path, prefix, 3, parse_faults("crash=0.7,loss=0.1"))

    async def scenario() -> FleetStats:
        stop = asyncio.Event()
        running = asyncio.create_task(fleet.run(stop=stop))
        try:
            await wait_until_async(
                lambda: len(sim_devices(hub, prefix)) == 3, 30, "enrolled", 0.2, in_thread=True
            )
            await wait_until_async(
                lambda: all(n.stats.crashes >= 1 for n in fleet.nodes),
                30,
                "crashes",
                0.2,
                in_thread=True,
            )
            await wait_until_async(
                lambda: in_sync(hub, prefix, 3), 30, "in sync after crashes", 0.2, in_thread=True
            )
        finally:
            stop.set()
        return await running

    stats = asyncio.run(scenario())
    assert stats.crashes >= 3 and stats.errors == []
    assert stats.traffic.failed_requests > 0  # loss=0.1 dropped some, the agent retried
    # Identity came back from disk after every crash: still exactly three devices.
    assert len(sim_devices(hub, prefix)) == 3


def test_a_power_cut_mid_update_resumes_the_journal_and_ends_on_old_or_new(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub, prefix = shared_hub, "power"
    push_release(hub, tmp_path, "pwr", ["1.0.0", "2.0.0"])
    fleet = make_fleet(hub, tmp_path, prefix, 4, parse_faults("powerloss=1.0"))

    def settled(version: str) -> bool:
        for node in fleet.nodes:
            if node.modules is None or not node.applied:
                return False
            updater = node.modules.updater
            if updater.journal_state("pwr") not in (State.DONE, State.FAILED, None):
                return False
            result = node.modules.results.get("pwr")
            if result is None or result.version != version:
                return False
        return in_sync(hub, prefix, 4) or all(n.applied and not n.applied.ok for n in fleet.nodes)

    async def scenario() -> FleetStats:
        stop = asyncio.Event()
        running = asyncio.create_task(fleet.run(stop=stop))
        try:
            await wait_until_async(
                lambda: len(sim_devices(hub, prefix)) == 4, 30, "enrolled", 0.2, in_thread=True
            )
            for version in ("1.0.0", "2.0.0"):
                await apply(
                    hub,
                    deployment(prefix, modules=f"[{{name: pwr, release: pwr@{version}}}]"),
                )
                await wait_until_async(
                    lambda v=version: settled(v), 40, f"pwr {version} settled", 0.2, in_thread=True
                )
        finally:
            stop.set()
        return await running

    stats = asyncio.run(scenario())
    assert stats.powerlosses >= 8  # every update of every node lost power at least once
    assert stats.crashes == stats.powerlosses
    for node in fleet.nodes:
        assert node.modules is not None
        installed = node.modules.updater.installed("pwr")
        # Never left without a working version: on the old release or the new one.
        assert installed is not None and installed.target.version in ("1.0.0", "2.0.0")
        assert node.modules.updater.journal_state("pwr") in (State.DONE, State.FAILED)


def test_the_sim_fleet_command_runs_nodes_in_worker_processes(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub, prefix = shared_hub, "cli"
    result = subprocess.run(
        [
            sys.executable, "-m", "fogline", "sim", "fleet", "--hub", hub.url,
            "--ca", str(hub.ca), "--devices", "4",
            "--processes", "2", "--duration", "3", "--prefix", prefix,
            "--labels", "site=lab", "--data-dir", str(tmp_path / "nodes"), "-o", "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FOGLINE_CLAIM": create_claim(hub, 4)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["nodes"] == stats["enrolled"] == 4 and stats["reports_ok"] >= 4
    rows = sim_devices(hub, prefix)
    assert len(rows) == 4 and all(
        r["reported_labels"] == {"site": "lab", "sim": "true"} for r in rows
    )
    # The data dirs stay where --data-dir put them, for a restart of the same nodes.
    assert (tmp_path / "nodes" / f"sim-{prefix}-3" / "identity" / "device.json").is_file()


def test_the_sim_fleet_command_names_a_bad_fault(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not used")
    result = subprocess.run(
        [
            sys.executable, "-m", "fogline", "sim", "fleet", "--hub", "https://127.0.0.1:1",
            "--ca", str(tmp_path / "ca.pem"), "--devices", "2",
            "--faults", "loss=0.1,flap=60s/10s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FOGLINE_CLAIM": "x"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "'flap=60s/10s'" in result.stderr and "0 < DOWN < PERIOD" in result.stderr


@pytest.mark.parametrize(
    ("processes", "sig"),
    [(1, signal.SIGINT), (1, signal.SIGTERM), (2, signal.SIGINT), (2, signal.SIGTERM)],
    ids=["1-process-ctrl-c", "1-process-sigterm", "2-processes-ctrl-c", "2-processes-sigterm"],
)
def test_the_sim_fleet_command_stopped_by_a_signal_prints_totals_and_exits_0(
    shared_hub: HubProcess, tmp_path: Path, processes: int, sig: signal.Signals
) -> None:
    hub, prefix = shared_hub, f"sig{processes}{sig.name.lower()}"
    output = "table" if sig is signal.SIGINT else "json"  # people press Ctrl-C; services kill
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "fogline", "sim", "fleet", "--hub", hub.url,
            "--ca", str(hub.ca), "--devices", "2",
            "--processes", str(processes), "--prefix", prefix, "--boot-spread", "0",
            "-o", output,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FOGLINE_CLAIM": create_claim(hub, 2)},  # never on the command line
        start_new_session=True,  # its own process group, as a shell job has
    )  # fmt: skip
    try:
        wait_until(lambda: in_sync(hub, prefix, 2), 30, "2 nodes enrolled and reporting")
        if sig is signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals the whole job
        else:
            proc.send_signal(sig)  # `kill PID`: only the command itself
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "error" not in err and "Traceback" not in err, err
    if output == "table":  # the totals so far, for a person
        assert "2/2 enrolled" in err and " reports (" in err, err
    else:
        stats = json.loads(out)
        assert stats["nodes"] == stats["enrolled"] == 2 and stats["reports_ok"] >= 2, out


ORPHAN_SCRIPT = """
import multiprocessing, sys, time
from pathlib import Path
from fogline.sim import Faults, FleetConfig, start_fleet

if __name__ == "__main__":
    hub_url, ca, claim, data_dir = sys.argv[1:5]
    config = FleetConfig(hub_url=hub_url, ca_path=Path(ca), claim=claim, devices=2,
                         data_dir=Path(data_dir), labels={}, faults=Faults(), prefix="orphan")
    fleet = start_fleet(config, 2)
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    time.sleep(120)
"""


def test_fleet_workers_stop_by_themselves_when_their_parent_is_killed(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    script = tmp_path / "fleet.py"
    script.write_text(ORPHAN_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), hub.url, str(hub.ca), create_claim(hub, 2),
         str(tmp_path / "nodes")],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    workers: list[int] = []
    try:
        assert proc.stdout is not None
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(workers) == 2
        wait_until(lambda: len(sim_devices(hub, "orphan")) == 2, 30, "the workers running")
        proc.kill()  # no chance to tell the workers
        proc.wait()
        wait_until(lambda: not any(process_alive(pid) for pid in workers), 20, "workers gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        for pid in workers:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
