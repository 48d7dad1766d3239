"""`fogline rollout rehearse -f MANIFEST`: roll a manifest out to a virtual fleet first.

A throwaway hub, stand-in releases for every module the manifest names, and
a virtual fleet carrying the first deployment's matchLabels; the manifest's
own `spec.rollout` policy decides. Exit 0 when the rollout completed, 1 otherwise.
"""

from pathlib import Path
from typing import Annotated

import typer

from fogline.manifest import parse_duration

from ._common import OutputOpt, console, err_console, print_json, wants_json
from ._format import human_bytes, plural


def rehearse(
    filename: Annotated[
        list[Path], typer.Option("--filename", "-f", help="Manifest file (repeatable).")
    ],
    devices: Annotated[int, typer.Option(min=1, max=100_000, help="Virtual devices.")] = 1000,
    faults: Annotated[
        str, typer.Option(help="As `fogline sim fleet --faults`, e.g. health-fail=0.1,loss=0.01.")
    ] = "",
    timeout: Annotated[str, typer.Option(help="Give up after this long, e.g. 10m.")] = "10m",
    processes: Annotated[
        int | None, typer.Option(min=1, help="Fleet worker processes (default: one per core).")
    ] = None,
    baseline: Annotated[
        list[Path] | None,
        typer.Option(
            "--baseline",
            help="Manifest the fleet runs first (repeatable): the rehearsal is then an "
            "upgrade from it, and canary analysis compares against devices still on it.",
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Rehearse a rollout on a throwaway hub with a virtual fleet; report how it ended.

    The throwaway hub has a TUF repository of its own (a root made for the
    rehearsal, each module delegated to the rehearsal's release key, every
    stand-in signed into it): the virtual devices pin its root and verify
    every update through TUF, as production nodes do.

    Metric faults tied to a release (mem-leak:web@2.0.0=30MB/h, cpu:web@2.0.0=+40%,
    restarts:web@2.0.0=1/h) show whether the rollout's canary analysis catches
    them, and when.
    """
    from fogline.sim import default_processes, parse_faults
    from fogline.sim import rehearse as run_rehearsal

    try:
        timeout_s = parse_duration(timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--timeout") from None
    fault_spec = parse_faults(faults)
    as_json = wants_json(output)
    result = run_rehearsal(
        filename,
        devices=devices,
        faults=fault_spec,
        timeout_s=timeout_s,
        processes=processes or default_processes(devices),
        progress=lambda message: err_console.print(message, highlight=False),
        baseline=baseline or (),
    )
    data = result.to_dict()
    if as_json:
        print_json(data)
    else:
        colour = "green" if result.ok else "red"
        console.print(f"[{colour}]{result.summary()}[/{colour}]", highlight=False, soft_wrap=True)
        analysis = result.analysis_line()
        if analysis is not None:
            console.print(analysis, highlight=False, soft_wrap=True, markup=False)
        # Every device in exactly one count, so they add up to the total: a
        # rolled-back device counts as reverted, whether it had failed or not
        # (the line above says why), and a later wave's devices as not started.
        counts = [
            f"{data[key] or 0} {word}"
            for key, word in (
                ("succeeded", "succeeded"),
                ("failed", "failed"),
                ("skipped", "skipped"),
                ("reverted", "reverted"),
                ("updating", "still updating"),
                ("pending", "not started"),
            )
            if data[key] or key in ("succeeded", "failed")
        ]
        console.print(
            f"{plural(data['devices'] or 0, 'device')}: {', '.join(counts)}; "
            f"{human_bytes(data['artifact_bytes'])} of artifacts, "
            f"{human_bytes(data['http_bytes'])} over HTTP",
            highlight=False,
        )
        console.print(result.tuf_line(), highlight=False)
    if not result.ok:
        raise typer.Exit(1)
