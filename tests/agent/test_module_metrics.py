"""The agent scrapes a module's local metrics endpoint for its health report:
only the chosen series, summed over label sets, from 127.0.0.1, within a
time and size bound; anything wrong leaves the module's series out."""

import asyncio
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fogline.agent import _module_metrics
from fogline.agent._module_metrics import ModuleScraper, ScrapeFailed, chosen_series
from fogline.agent.supervisor import MetricsTarget
from fogline.artifact import ModuleSpecError, load_module_spec

TEXT = """\
# HELP http_errors Errors answered.
# TYPE http_errors counter
http_errors_total{code="500"} 7
http_errors_total{code="503"} 5
http_errors_created{code="500"} 1.7e9
# HELP queue_depth Records waiting.
# TYPE queue_depth gauge
queue_depth 3.5
# TYPE ignored gauge
ignored 99
"""


@contextmanager
def endpoint(answer: dict[str, tuple[int, bytes, float]]) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering path -> (status, body, delay)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, delay = answer.get(self.path, (404, b"", 0.0))
            time.sleep(delay)
            self.send_response(status)
            if status == 302:
                self.send_header("location", "http://127.0.0.1:9/metrics")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_only_the_chosen_series_are_kept_each_summed_over_its_label_sets():
    found = chosen_series(TEXT, ("http_errors_total", "queue_depth", "absent_total"))
    assert found == {"http_errors_total": 12.0, "queue_depth": 3.5}
    with pytest.raises(ScrapeFailed, match="not the Prometheus text format"):
        chosen_series("http_errors_total{code=500 7\n", ("http_errors_total",))
    # NaN is left out: the hub refuses it.
    assert chosen_series("queue_depth NaN\n", ("queue_depth",)) == {}


def test_the_scraper_reads_127_0_0_1_within_bounds_and_leaves_out_what_fails(monkeypatch):
    monkeypatch.setattr(_module_metrics, "SCRAPE_TIMEOUT_S", 0.5)
    # A proxy from the environment is never used for module traffic.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    huge = b"queue_depth 1\n" + b"# padding\n" * (_module_metrics.MAX_SCRAPE_BYTES // 10)
    answers = {
        "/metrics": (200, TEXT.encode(), 0.0),
        "/huge": (200, huge, 0.0),
        "/slow": (200, TEXT.encode(), 3.0),
        "/broken": (500, b"", 0.0),
        "/moved": (302, b"", 0.0),
    }
    series = ("http_errors_total", "queue_depth")
    with endpoint(answers) as port:
        targets = {
            name: MetricsTarget(port=port, path=f"/{path}", series=series)
            for name, path in [
                ("web", "metrics"),
                ("huge", "huge"),
                ("slow", "slow"),
                ("broken", "broken"),
                ("moved", "moved"),
            ]
        }
        scraper = ModuleScraper()
        started = time.monotonic()
        found = asyncio.run(scraper.scrape(targets))
        took = time.monotonic() - started
    assert found == {"web": {"http_errors_total": 12.0, "queue_depth": 3.5}}
    assert took < 2.5  # concurrent, and the slow one cut at its timeout
    assert set(scraper._failing) == {"huge", "slow", "broken", "moved"}
    assert "more than" in scraper._failing["huge"]
    assert "answered 500" in scraper._failing["broken"]
    assert "answered 302" in scraper._failing["moved"]


def test_scrapes_do_not_load_the_ca_bundle_each_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """An httpx client that makes its own TLS context loads the CA bundle:
    about 20 ms of CPU on every report of a node whose modules declare
    metrics, for endpoints that are plain http."""
    loads: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args or kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    scraper = ModuleScraper()
    with endpoint({"/metrics": (200, b"queue_depth 3.5\n", 0.0)}) as port:
        for _ in range(3):
            found = asyncio.run(
                scraper.scrape({"web": MetricsTarget(port=port, series=("queue_depth",))})
            )
            assert found == {"web": {"queue_depth": 3.5}}
    assert len(loads) <= 1  # at most the shared context's own, once


def test_nothing_listens_leaves_the_module_out():
    with endpoint({}) as port:
        pass  # closed again: nothing listens on the port now
    found = asyncio.run(ModuleScraper().scrape({"web": MetricsTarget(port=port, series=("x",))}))
    assert found == {}


MODULE = """\
name: web
version: 1.0.0
command: [python3, server.py]
health: {uptime: 1s}
architectures: [any]
"""


def test_a_module_file_declares_its_metrics_endpoint_and_series():
    spec = load_module_spec(
        MODULE + "metrics: {port: 9100, series: [http_errors_total, queue_depth]}\n"
    )
    assert spec.metrics is not None
    assert (spec.metrics.port, spec.metrics.path, spec.metrics.series) == (
        9100,
        "/metrics",
        ("http_errors_total", "queue_depth"),
    )


@pytest.mark.parametrize(
    ("metrics", "field", "words"),
    [
        ("{port: 9100, series: [http-errors]}", "metrics.series[0]", "String should match"),
        ("{port: 9100, series: []}", "metrics.series", "at least 1"),
        ("{port: 9100, series: [a, a]}", "metrics.series", "twice"),
        ("{port: 9100, path: 'http://x/metrics', series: [a]}", "metrics.path", "URL path"),
        ("{port: 70000, series: [a]}", "metrics.port", "less than or equal"),
        ("{port: 9100, series: [a], host: x}", "metrics.host", "unknown field"),
    ],
)
def test_a_bad_metrics_block_is_refused_naming_the_field(metrics, field, words):
    with pytest.raises(ModuleSpecError) as caught:
        load_module_spec(MODULE + f"metrics: {metrics}\n")
    text = str(caught.value)
    assert field in text and words in text, text


def test_only_a_service_declares_a_metrics_endpoint():
    bundle = "name: model\nversion: 1.0.0\nkind: model\narchitectures: [any]\n"
    with pytest.raises(ModuleSpecError, match="only a service runs a process"):
        load_module_spec(bundle + "metrics: {port: 9100, series: [a]}\n")
