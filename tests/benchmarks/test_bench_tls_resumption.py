"""bench_tls_resumption runs on the hub's own server context: every
"resumed" handshake resumes (the script refuses to report otherwise), with
stateless tickets and with stateful ones (--tls-session-cache)."""

from pathlib import Path

import pytest

from benchmarks.bench_tls_resumption import cache_memory, measure


@pytest.mark.parametrize("tickets", ["stateless", "stateful"])
def test_the_handshake_benchmark_resumes_every_session_with_a_device_certificate(
    tmp_path: Path, tickets: str
) -> None:
    ms = measure(tmp_path, handshakes=20, with_cert=True, tickets=tickets)
    assert set(ms) == {"full", "resumed", "cached"}
    assert ms["full"] > 0 and ms["resumed"] > 0
    # Stateful: every handshake's session stays in the cache (42 of them).
    assert ms["cached"] == (42 if tickets == "stateful" else 0)


def test_the_cache_memory_probe_checks_what_the_cache_holds(tmp_path: Path) -> None:
    kb = cache_memory(tmp_path, sessions=20)
    assert set(kb) == {"full", "resumed"}
