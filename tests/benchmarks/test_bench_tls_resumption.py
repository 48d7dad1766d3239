"""bench_tls_resumption runs on the hub's own server context: every
"resumed" handshake resumes (the script refuses to report otherwise)."""

from pathlib import Path

from benchmarks.bench_tls_resumption import measure


def test_the_handshake_benchmark_resumes_every_session_with_a_device_certificate(
    tmp_path: Path,
) -> None:
    ms = measure(tmp_path, handshakes=20, with_cert=True)
    assert set(ms) == {"full", "resumed"} and all(v > 0 for v in ms.values())
