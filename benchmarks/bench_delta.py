"""Delta updates: bytes and time of a delta against the full archive, for a
one-line change, a changed dependency and a new major version of a 5 MB release.

Releases are built with `build_release` (what `fogline release build` runs).
The module is made to look like a real one: Python sources and vendored
dependencies (text that compresses about 4x) and a binary model. Each pair
is measured with zstd's patch-from mode on the decompressed tars (what the
hub serves, `fogline.artifact._delta`) and, when the `bsdiff4` package is
importable, with bsdiff on the same tars, in the same run: delta bytes,
time to make, time to apply, and the peak RSS of a fresh process doing each.
A zstd delta of the compressed archives themselves is shown too, to show
why deltas are taken on the tars.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_delta [--reps 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard

from benchmarks._common import git_revision, machine, median, table
from fogline.artifact import build_release
from fogline.artifact._delta import (
    apply_delta,
    archive_tar,
    compress_archive,
    make_delta,
    sha256_digest,
)

_WORDS = [
    "def",
    "class",
    "return",
    "self",
    "value",
    "data",
    "import",
    "from",
    "async",
    "await",
    "with",
    "for",
    "in",
    "if",
    "else",
    "elif",
    "try",
    "except",
    "raise",
    "None",
    "True",
    "False",
    "config",
    "sensor",
    "reading",
    "window",
    "mean",
    "limit",
    "threshold",
    "publish",
    "topic",
    "payload",
    "buffer",
    "offset",
    "count",
    "total",
    "batch",
    "stream",
    "module",
]


def _source_file(rng: random.Random, lines: int) -> str:
    out = []
    for _ in range(lines):
        indent = "    " * rng.randint(0, 3)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 10)))
        out.append(f"{indent}{words}  # {rng.randint(0, 10**6)}")
    return "\n".join(out) + "\n"


def _write_module(root: Path, version: str, seed: int, *, mutate: float = 0.0) -> None:
    """A module of ~5 MB compressed: 400 source files, 6 vendored packages,
    a 2 MiB model. `mutate` is the share of files regenerated from a new seed."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "fogline-module.yaml").write_text(
        f"name: sensor-app\nversion: {version}\ncommand: [python3, main.py]\narchitectures: [any]\nhealth: {{uptime: 5s}}\n"
    )
    base = random.Random(seed)
    new = random.Random(seed + 1000)
    for index in range(400):
        pkg = root / "vendor" / f"dep{index % 6}"
        pkg.mkdir(parents=True, exist_ok=True)
        text = _source_file(base, 800)
        if new.random() < mutate:
            text = _source_file(new, 800)
        (pkg / f"mod{index}.py").write_text(text)
    (root / "main.py").write_text(_source_file(random.Random(seed + 1), 200))
    model = random.Random(seed + 2).randbytes(2 << 20)
    if mutate:
        model = new.randbytes(2 << 20)
    (root / "model.bin").write_bytes(model)


def _scenarios(work: Path) -> dict[str, tuple[bytes, bytes]]:
    src = work / "src"
    out = work / "out"
    out.mkdir()

    def build(tag: str) -> bytes:
        info = build_release(src, out / f"{tag}.tar.zst")
        return info.path.read_bytes()

    _write_module(src, "1.0.0", 7)
    a = build("a")
    main = src / "main.py"
    lines = main.read_text().splitlines(keepends=True)
    lines[100] = "    threshold = 42  # tuned on site\n"
    main.write_text("".join(lines))
    (src / "fogline-module.yaml").write_text(
        (src / "fogline-module.yaml").read_text().replace("1.0.0", "1.0.1")
    )
    one_line = build("b1")
    _write_module(src, "1.1.0", 7)
    dep = random.Random(99)
    for path in sorted((src / "vendor" / "dep3").iterdir()):
        path.write_text(_source_file(dep, 800))  # a new release of one dependency
    dependency = build("b2")
    _write_module(src, "2.0.0", 7, mutate=0.8)
    major = build("b3")
    return {
        "one-line change": (a, one_line),
        "changed dependency": (a, dependency),
        "new major version": (a, major),
    }


def _in_child(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run `work` in a forked process: (its result, CPU seconds, peak RSS MiB)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()

    def run() -> None:
        start = time.process_time()
        result = work()
        cpu = time.process_time() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child.send((result, cpu, peak))

    proc = ctx.Process(target=run)
    proc.start()
    if not parent.poll(600):
        proc.kill()
        raise TimeoutError("a measurement took over 600 s")
    result, cpu, peak = parent.recv()
    proc.join(30)
    return result, cpu, peak


def _bsdiff() -> Any:
    try:
        import bsdiff4  # type: ignore[import-not-found]  # optional, only for the comparison
    except ImportError:
        return None
    return bsdiff4


def _measure(name: str, a: bytes, b: bytes, rows: list[list[Any]]) -> float:
    full = len(b)
    delta, make_s, make_mb = _in_child(lambda: make_delta(a, b))
    assert delta is not None, "build_release output must be reproducible"
    rebuilt, apply_s, apply_mb = _in_child(lambda: sha256_digest(apply_delta(a, delta)))
    assert rebuilt == sha256_digest(b), "the rebuilt archive differs"
    ratio = 100 * len(delta) / full
    rows.append([
        name, "zstd patch-from (tars)", f"{full:,}", f"{len(delta):,}", f"{ratio:.2f} %",
        f"{make_s:.2f}", f"{apply_s:.2f}", f"{make_mb:.0f} / {apply_mb:.0f}",
    ])  # fmt: skip
    bsdiff4 = _bsdiff()
    if bsdiff4 is not None:

        def bs_make() -> bytes:
            return bytes(bsdiff4.diff(archive_tar(a), archive_tar(b)))

        patch, bs_make_s, bs_make_mb = _in_child(bs_make)
        _, bs_apply_s, bs_apply_mb = _in_child(
            # The node needs the archive's bytes, as with zstd: recompress.
            lambda: len(compress_archive(bsdiff4.patch(archive_tar(a), patch)))
        )
        rows.append([
            name, "bsdiff4 (tars)", f"{full:,}", f"{len(patch):,}",
            f"{100 * len(patch) / full:.2f} %", f"{bs_make_s:.2f}", f"{bs_apply_s:.2f}",
            f"{bs_make_mb:.0f} / {bs_apply_mb:.0f}",
        ])  # fmt: skip
    if name == "one-line change":
        raw = zstandard.ZstdCompressor(
            level=19,
            dict_data=zstandard.ZstdCompressionDict(a, dict_type=zstandard.DICT_TYPE_RAWCONTENT),
        ).compress(b)
        rows.append([
            name, "zstd patch-from (compressed archives)", f"{full:,}", f"{len(raw):,}",
            f"{100 * len(raw) / full:.2f} %", "", "", "",
        ])  # fmt: skip
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rows: list[list[Any]] = []
    one_line: list[float] = []
    loads: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fogline-bench-delta-") as tmp:
        pairs = _scenarios(Path(tmp))
        for rep in range(1, args.reps + 1):
            load = f"{os.getloadavg()[0]:.1f}"
            loads.append(load)
            for name, (a, b) in pairs.items():
                before = len(rows)
                ratio = _measure(name, a, b, rows)
                for row in rows[before:]:
                    row.insert(0, f"{rep} (load {load})")
                if name == "one-line change":
                    one_line.append(ratio)
    print("## Delta updates (bench_delta)\n")
    print(f"Machine: {machine()}; revision {git_revision()}; loads {', '.join(loads)}.\n")
    print(
        table(
            ["rep", "change", "method", "full bytes", "delta bytes", "delta/full",
             "make CPU s", "apply CPU s", "peak RSS MiB make / apply"],
            rows,
        )
    )  # fmt: skip
    print(
        f"\nOne-line change, zstd delta/full: median {median(one_line):.2f} % "
        f"(goal ≤ 2 %), repetitions {', '.join(f'{r:.2f} %' for r in one_line)}."
    )


if __name__ == "__main__":
    main()
