"""The hub's CPU for the requests of one device update, without the bytes.

A rollout's CPU per device update (`bench_rollout_scale`) mixes the
simulated devices, nginx, the fleet's idle reports and long-polls and the
machine's other load. This isolates the hub's requests of an update, as a
node with TUF makes them once it has seen the new desired state:

    GET  /v1/tuf/metadata/<N+1>.root.json    404 (ngclient's probe for a new root)
    GET  /v1/tuf/metadata/timestamp.json
    GET  /v1/tuf/metadata/<v>.snapshot.json
    GET  /v1/tuf/metadata/<v>.targets.json
    GET  /v1/tuf/metadata/<v>.module-payload.json
    GET  /v1/artifacts/<digest>              307 to the offload server (not followed)
    POST /v1/report

A real hub (SQLite, `--hub-workers` processes, `--artifact-offload` to an
address nothing listens on: the hub only signs the redirect) with TUF set
up and a 1 MB release pushed with the `fogline` CLI; `--devices` devices
enrolled for real, each on its own kept-alive mTLS connection, opened before
the measurement. Each round every device sends its update's requests one
after another, `--concurrency` devices at a time. The figure is the hub's
CPU-seconds (all its processes, /proc) over the rounds divided by the
updates; each round is a repetition, printed with the 1-minute load.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_update_requests --devices 500 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks._common import git_revision, machine, table
from benchmarks.bench_hub_scale import _context, _enroll_all, make_identities, proc_cpu_s
from benchmarks.bench_rollout_scale import MODULE, VERSION, Conn, make_release
from fogline.protocol import DeviceFacts, Report
from tests.support.device import FACTS
from tests.support.processes import free_port, start_hub


def _deployment() -> str:
    # No rollout: every device's desired state names the release at once,
    # so the hub authorises every device's download.
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: bench}}
        spec:
          selector: {{}}
          modules:
            - {{name: {MODULE}, release: {MODULE}@{VERSION}}}
        """)


def _paths(conn_results: dict[str, bytes], digest: str) -> list[tuple[str, str, int]]:
    """(method, path, expected status) of one update, from the metadata served now."""
    timestamp = json.loads(conn_results["timestamp"])["signed"]
    snapshot_v = timestamp["meta"]["snapshot.json"]["version"]
    snapshot = json.loads(conn_results["snapshot"])["signed"]
    targets_v = snapshot["meta"]["targets.json"]["version"]
    module_v = snapshot["meta"][f"module-{MODULE}.json"]["version"]
    root_v = json.loads(conn_results["root"])["signed"]["version"]
    tuf = "/v1/tuf/metadata"
    return [
        ("GET", f"{tuf}/{root_v + 1}.root.json", 404),
        ("GET", f"{tuf}/timestamp.json", 200),
        ("GET", f"{tuf}/{snapshot_v}.snapshot.json", 200),
        ("GET", f"{tuf}/{targets_v}.targets.json", 200),
        ("GET", f"{tuf}/{module_v}.module-{MODULE}.json", 200),
        ("GET", f"/v1/artifacts/{digest}", 307),
        ("POST", "/v1/report", 200),
    ]


async def _measure(
    port: int,
    ca_pem: str,
    creds: list[tuple[str, str]],
    digest: str,
    rounds: int,
    concurrency: int,
    hub_pid: int,
) -> list[tuple[float, float, float]]:
    conns = [Conn(port, _context(ca_pem, cert, key), asyncio.Semaphore(32)) for cert, key in creds]
    first = conns[0]
    found: dict[str, bytes] = {}
    for name, path in (
        ("timestamp", "timestamp.json"),
        ("root", "root.json"),
    ):
        status, found[name], _ = await first.request("GET", f"/v1/tuf/metadata/{path}")
        assert status == 200, (path, status)
    snapshot_v = json.loads(found["timestamp"])["signed"]["meta"]["snapshot.json"]["version"]
    status, found["snapshot"], _ = await first.request(
        "GET", f"/v1/tuf/metadata/{snapshot_v}.snapshot.json"
    )
    assert status == 200
    steps = _paths(found, digest)
    report = Report(facts=DeviceFacts.model_validate(FACTS), labels={}).model_dump_json().encode()
    limit = asyncio.Semaphore(concurrency)
    failures: dict[str, int] = {}

    async def update(conn: Conn) -> None:
        async with limit:
            for method, path, expected in steps:
                body = report if method == "POST" else b""
                status, _, _ = await conn.request(method, path, body=body)
                if status != expected:
                    key = f"{method} {path.split('/')[-1][:40]} {status}"
                    failures[key] = failures.get(key, 0) + 1

    # Connections opened (and one update each) before the measurement.
    await asyncio.gather(*(update(c) for c in conns))
    results = []
    for _ in range(rounds):
        cpu0, t0 = proc_cpu_s(hub_pid), time.monotonic()
        await asyncio.gather(*(update(c) for c in conns))
        cpu, wall = proc_cpu_s(hub_pid) - cpu0, time.monotonic() - t0
        results.append((1000 * cpu / len(conns), wall, os.getloadavg()[0]))
    for conn in conns:
        await conn.close()
    if failures:
        print(f"unexpected answers: {failures}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--hub-workers", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.devices <= 5000 or not 1 <= args.rounds <= 50:
        raise SystemExit("--devices 1..5000, --rounds 1..50")
    if not 1 <= args.concurrency <= 1000 or not 1 <= args.hub_workers <= 8:
        raise SystemExit("--concurrency 1..1000, --hub-workers 1..8")
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-update-"))
    offload = f"https://127.0.0.1:{free_port()}"
    hub = start_hub(
        root / "hub",
        extra_args=[
            *("--workers", str(args.hub_workers), "--artifact-offload", offload),
            *("--max-connections-per-address", "0"),
        ],
    )
    assert hub.proc is not None
    try:
        digest = make_release(hub, root, 1, tuf=True)
        (root / "deploy.yaml").write_text(_deployment())
        hub.cli("apply", "-f", str(root / "deploy.yaml"))
        with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
            identities = make_identities(root / "keys", args.devices, pool)
        claim = hub.create_claim(max_uses=args.devices, expires="1h")
        certs = root / "certs"
        certs.mkdir()
        asyncio.run(_enroll_all(hub, claim, identities, certs))
        creds = [
            (str(certs / f"{n}-cert.pem"), str(root / "keys" / f"{n}-key.pem"))
            for n, _ in identities
        ]
        results = asyncio.run(
            _measure(
                hub.port,
                hub.ca.read_text(),
                creds,
                digest,
                args.rounds,
                args.concurrency,
                hub.proc.pid,
            )
        )
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n## Hub CPU for one device update's requests (git {git_revision()})\n")
    print(f"Machine: {machine()}  ")
    print("Command: `" + " ".join(["... bench_update_requests", *sys.argv[1:]]) + "`\n")
    print(
        table(
            ["round", "hub CPU per update (ms)", "wall (s)", "load (1-min)"],
            [[i + 1, f"{c:.2f}", f"{w:.1f}", f"{lo:.2f}"] for i, (c, w, lo) in enumerate(results)],
        )
    )
    median = statistics.median(c for c, _, _ in results)
    print(f"\n* Median: **{median:.2f} ms** of hub CPU per update ({args.devices} devices).")


if __name__ == "__main__":
    main()
