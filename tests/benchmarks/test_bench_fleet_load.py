"""`bench_fleet_load` at a tiny size against a real hub on PostgreSQL with fsync
on: every device connects with its own cached identity, reports in the
window, and gets and reports each change; the figures and the section are
produced. Plus the identity cache and the fsync switch it relies on."""

import asyncio
import datetime as dt
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from cryptography import x509

from benchmarks._fleet_identities import device_id, make_identities
from benchmarks._fleet_loadgen import Generator, GenJob
from benchmarks.bench_fleet_load import figures, main
from fogline.security import device_id_from_cert
from tests.support.postgres import throwaway_postgres

DEVICES = 120


def test_every_device_reports_and_gets_each_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--devices", str(DEVICES), "--interval", "4", "--window", "8", "--changes", "2"]
    argv += ["--hub-workers", "2", "--change-timeout", "60", "--ramp-timeout", "120"]
    result = main([*argv, "--cache", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    found = figures(result)

    assert result["ramp"].synced == DEVICES and result["ramp"].limited_by == "", out
    # Two reports per device in an 8 s window at a 4 s interval, give or
    # take the ones at the window's edges.
    assert DEVICES <= found["reports"] <= 3 * DEVICES + 10, out
    assert 0 < found["p50_ms"] <= found["p99_ms"] < 30_000, out
    # The hub's processes and the PostgreSQL server both used CPU in the window.
    assert found["hub_cores"] > 0 and found["db_cores"] > 0, out
    assert math.isfinite(found["per_core"]), out
    assert [c["change"].number for c in found["changes"]] == [1, 2], out
    for change in found["changes"]:
        assert change["missing"] == 0 and len(change["reported"]) == DEVICES, out
        # A device reports a revision after it got it, and gets it after the apply began.
        assert all(
            0 < got <= rep < 60
            for got, rep in zip(sorted(change["got"]), sorted(change["reported"]), strict=True)
        ), out
    assert found["errors"] == {}, out
    assert f"| 1 | {DEVICES}/{DEVICES} |" in out and f"| 2 | {DEVICES}/{DEVICES} |" in out, out
    assert "KB per device" in out and "(`fsync=on`)" in out, out


def test_identities_are_made_once_per_ca_and_name_their_device(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        first, made = make_identities(tmp_path, 5, pool)
        again, made_again = make_identities(tmp_path, 5, pool)
        other, made_other = make_identities(tmp_path / "other", 5, pool)
    assert (made, made_again, made_other) == (5, 0, 5)
    assert again == first
    assert {i.serial_hex for i in other}.isdisjoint({i.serial_hex for i in first})
    for identity in first:
        pem = Path(identity.pem)
        assert pem.stat().st_mode & 0o777 == 0o600
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        assert device_id_from_cert(cert) == device_id(identity.index)
        assert f"{cert.serial_number:x}" == identity.serial_hex
        assert cert.not_valid_after_utc == identity.not_after > dt.datetime.now(dt.UTC)


def test_a_chunk_cut_short_is_made_again(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as pool:
        first, _ = make_identities(tmp_path, 3, pool)
        next(tmp_path.glob("*/0000.serials")).unlink()  # as a crash before the rename
        again, made = make_identities(tmp_path, 3, pool)
    assert made == 3
    assert {i.serial_hex for i in again}.isdisjoint({i.serial_hex for i in first})


@pytest.mark.parametrize("fsync", [True, False])
def test_throwaway_postgres_runs_with_fsync_as_asked(fsync: bool) -> None:
    with throwaway_postgres(fsync=fsync) as base:
        plain = base.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(f"{plain}/postgres") as conn:
            row = conn.execute("SHOW fsync").fetchone()
    assert row == ("on" if fsync else "off",)


def test_a_connect_phase_that_runs_out_measures_the_devices_that_connected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One handshake at a time per generator and half a second to connect:
    # most of the 300 devices give up, and the figures are over the others.
    argv = ["--devices", "300", "--interval", "4", "--window", "4", "--changes", "1"]
    argv += ["--ramp-timeout", "0.5", "--connect-concurrency", "1", "--change-timeout", "10"]
    result = main([*argv, "--hub-workers", "1", "--idle-s", "1", "--cache", str(tmp_path)])
    out = capsys.readouterr().out
    found = figures(result)

    fleet = result["ramp"].synced
    assert 0 < fleet < 300, out
    assert result["ramp"].limited_by == "time (--ramp-timeout)", out
    assert "limited by time (--ramp-timeout)" in out, out
    (change,) = found["changes"]
    assert change["expected"] == fleet and change["missing"] == 0, out
    assert len(change["reported"]) == fleet, out
    assert f"| 1 | {fleet}/{fleet} |" in out, out
    assert f"{fleet:,} devices each reporting" in out, out


def test_a_device_that_swallows_its_cancel_still_ends_at_the_stop(tmp_path: Path) -> None:
    """Python 3.11's wait_for can swallow a cancel that lands as its request
    completes; such a device must not keep its generator (and the benchmark
    waiting on it) alive until the hard stop time minutes later."""

    async def scenario() -> float:
        job = GenJob(
            0, "127.0.0.1", 1, "127.0.0.2", "", [], 1.0, time.time() + 600,
            str(tmp_path / "stop"), str(tmp_path / "ramp"), str(tmp_path / "status"), 1, seed=0,
        )  # fmt: skip
        generator = Generator(job)

        async def stubborn_device() -> None:
            swallowed = False
            while time.monotonic() < generator.stop:
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed = True  # as wait_for's race does, once

        tasks = [asyncio.create_task(stubborn_device()) for _ in range(3)]
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        await generator._end(tasks)
        assert all(task.done() for task in tasks)
        return time.monotonic() - t0

    assert asyncio.run(scenario()) < 5
