"""benchmarks/bench_download_client.py downloads from a real nginx over TLS
with each client, in child processes, and reports each one's CPU per download."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.bench_download_client import VARIANTS, bench, report


def test_every_client_downloads_the_archive_and_its_cpu_is_counted(tmp_path: Path) -> None:
    samples = bench(tmp_path, size_mb=1, count=3, repeats=1)
    assert [s.variant for s in samples] == list(VARIANTS)
    # Each child checked the size it wrote (or curl --fail'ed). The CPU
    # figures of 1 MB are within a child's start-up noise: only finite here.
    for variant in VARIANTS:
        assert (tmp_path / f"dest-{variant}").stat().st_size == 1024 * 1024
    assert all(math.isfinite(s.cpu_ms) and s.load >= 0 for s in samples), samples
    text = report(samples, 1, 3)
    assert all(f"| {variant} |" in text for variant in VARIANTS)
