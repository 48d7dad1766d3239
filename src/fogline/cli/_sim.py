"""`fogline sim fleet`: a virtual fleet on the agent's real code paths, with faults."""

import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from fogline._log import LOG_FORMAT_ENV, configure_logging

from ._common import (
    ClaimFileOpt,
    LogFormatOpt,
    OutputOpt,
    claim_from_env,
    err_console,
    print_json,
    safe_text,
    wants_json,
)

if TYPE_CHECKING:
    from fogline.sim import FleetConfig, FleetStats

app = typer.Typer(help="Simulate edge nodes against a hub.", no_args_is_help=True)

FaultsOpt = Annotated[
    str,
    typer.Option(
        "--faults",
        help="Comma list: loss=0.05, latency=50ms, flap=10s/60s, crash=0.01, powerloss=0.1, "
        "health-fail=0.2, health-fail:NAME[@VERSION]=1.0.",
    ),
]


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set by SIGINT (Ctrl-C) or SIGTERM: the normal ways to stop a foreground fleet.

    A second signal while stopping raises KeyboardInterrupt: whoever presses
    Ctrl-C twice wants out now, totals or not.
    """
    asked = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_fleet(config: "FleetConfig", processes: int, duration: float | None) -> "FleetStats":
    """Run until --duration ends or a stop signal arrives; then stop and return the totals.

    Raises:
        SimError: the fleet failed, or a worker died without its totals.
    """
    from fogline.sim import start_fleet

    with _stop_requests() as asked:
        workers = start_fleet(config, processes, duration)
        # Polled: the handler only sets `asked`, which this loop sees within 0.2 s.
        while not asked.is_set() and not workers.wait(0.2):
            pass
        if asked.is_set():
            err_console.print("stopping the fleet; the totals follow", highlight=False)
        return workers.stop()


@app.command("fleet")
def fleet(
    hub: Annotated[str, typer.Option("--hub", envvar="FOGLINE_HUB", help="Hub URL.")],
    ca: Annotated[Path, typer.Option("--ca", help="The fleet CA certificate (hub DIR/ca.pem).")],
    devices: Annotated[int, typer.Option("--devices", min=1, help="How many nodes.")],
    labels: Annotated[
        str,
        typer.Option(
            help="Labels every node asks for: k=v,k2=v2. Requested only: deployments select "
            "on the claim's labels."
        ),
    ] = "",
    faults: FaultsOpt = "",
    processes: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: one per core).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: until Ctrl-C).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Node data dirs go here (default: a temp dir)."),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Nodes are named sim-PREFIX-<i>.")] = "fleet",
    seed: Annotated[int, typer.Option(help="Seed of every random fault.")] = 0,
    claim_file: ClaimFileOpt = None,
    boot_spread: Annotated[
        float | None,
        typer.Option(min=0, help="Nodes boot at random within this many seconds (default: 50/s)."),
    ] = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Run N virtual nodes: real enrollment, sync, reports and updates; fake module processes.

    The claim (with enough uses) comes from FOGLINE_CLAIM or --claim-file.
    """
    from fogline.protocol import parse_labels
    from fogline.security import read_token_file
    from fogline.sim import FleetConfig, boot_spread_s, default_processes, parse_faults

    if log_format is not None:
        os.environ[LOG_FORMAT_ENV] = log_format.value  # the workers configure their own logs
    configure_logging("warning")
    claim = claim_from_env(claim_file)
    if claim is None:
        if claim_file is None:
            raise typer.BadParameter("set FOGLINE_CLAIM or pass it", param_hint="--claim-file")
        claim = read_token_file(claim_file)  # TokenFileError: one line at the boundary
    try:
        node_labels = parse_labels(labels)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--labels") from None
    fault_spec = parse_faults(faults)  # FaultSpecError: one line at the command boundary
    if not ca.is_file():
        raise typer.BadParameter(f"{ca}: not a file", param_hint="--ca")
    with tempfile.TemporaryDirectory(prefix="fogline-sim-") as tmp:
        config = FleetConfig(
            hub_url=hub,
            ca_path=ca.resolve(),
            claim=claim,
            devices=devices,
            data_dir=(data_dir or Path(tmp)).resolve(),
            labels=node_labels,
            faults=fault_spec,
            prefix=prefix,
            seed=seed,
            start_spread_s=boot_spread_s(devices) if boot_spread is None else boot_spread,
        )
        count = processes or default_processes(devices)
        err_console.print(
            f"starting {devices} virtual nodes (sim-{prefix}-0..{devices - 1}) in "
            f"{count} processes; Ctrl-C stops",
            highlight=False,
        )
        stats = _run_fleet(config, count, duration)
    if wants_json(output):
        print_json(stats.to_dict())
        return
    traffic = stats.traffic
    err_console.print(
        f"{stats.enrolled}/{stats.nodes} enrolled, {stats.reports_ok} reports "
        f"({stats.reports_failed} failed), {stats.crashes} crashes, "
        f"{stats.powerlosses} power losses, {traffic.requests} requests "
        f"({traffic.failed_requests} dropped), {traffic.http_bytes} HTTP bytes, "
        f"{traffic.artifact_bytes} artifact bytes",
        highlight=False,
    )
    for revision, count in sorted(stats.applied.items(), key=lambda kv: -kv[1]):
        err_console.print(f"  {count} nodes applied {safe_text(revision)}", highlight=False)
    for error in stats.errors:
        err_console.print(f"  [red]refused[/red]: {safe_text(error)}", highlight=False)
