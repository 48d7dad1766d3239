"""The self-healing actions as sentences (hub/_healing_actions.py), from the
detail the two passes write into the audit trail, and from a detail that
lacks the figures (an entry written by an older hub)."""

from __future__ import annotations

from fogline.hub._healing_actions import _sentence

MIB = 2**20
RISING = 40 * MIB / 3600  # 40 MiB/h in bytes per second


def test_a_restart_reads_with_the_trend_and_the_limit() -> None:
    over = {"module": "web", "rss_bytes": 530 * MIB, "bytes_per_s": RISING}
    over |= {"limit_bytes": 512 * MIB, "eta_s": None}
    assert _sentence("restart", "node-17", over) == (
        "restarted web on node-17: RSS 530 MiB rising 40.0 MiB/h, limit 512 MiB reached"
    )
    soon = {**over, "rss_bytes": 490 * MIB, "eta_s": 1980.4}
    assert _sentence("restart", "node-17", soon) == (
        "restarted web on node-17: RSS 490 MiB rising 40.0 MiB/h, limit 512 MiB in ~33m"
    )
    bare = {"module": "web", "reason": "web RSS rising"}
    assert _sentence("restart", "node-17", bare) == "restarted web on node-17: web RSS rising"


def test_a_quarantine_reads_with_its_failures_window_and_deployment() -> None:
    detail = {"failures": 3, "window_s": 3600.0, "deployment": "web"}
    assert _sentence("quarantine", "node-17", detail) == (
        "quarantined node-17: 3 crash loops within 1h (deployment web); rollouts skip it"
    )
    once = {**detail, "failures": 1, "window_s": 600}
    assert _sentence("quarantine", "node-17", once) == (
        "quarantined node-17: 1 crash loop within 10m (deployment web); rollouts skip it"
    )
    assert _sentence("quarantine", "node-17", {"reason": "looped"}) == (
        "quarantined node-17: looped; rollouts skip it"
    )
