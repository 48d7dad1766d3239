"""/metrics, /openapi.json and /docs need an operator token on the TLS port;
Prometheus may scrape /metrics without one on a loopback listener, which
serves nothing else (issue #12: all three were open to anyone)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import ENV, HubProcess, fogline_cmd, free_port, start_hub, tls


@pytest.fixture(scope="module")
def hub_with_metrics_port(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[HubProcess, int]]:
    port = free_port()
    hub = start_hub(
        tmp_path_factory.mktemp("metrics") / "hub",
        extra_args=["--metrics-listen", f"127.0.0.1:{port}"],
    )
    try:
        yield hub, port
    finally:
        hub.stop()


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json", "/docs"])
def test_without_a_token_the_tls_port_answers_401(shared_hub: HubProcess, path: str) -> None:
    response = httpx.get(f"{shared_hub.url}{path}", verify=tls(shared_hub.ca), timeout=10)
    assert response.status_code == 401
    assert "fogline_hub" not in response.text and "/v1/" not in response.text
    bogus = httpx.get(
        f"{shared_hub.url}{path}",
        verify=tls(shared_hub.ca),
        headers={"authorization": "Bearer fga_nope.nope"},
        timeout=10,
    )
    assert bogus.status_code == 401


def test_an_operator_reads_metrics_schema_and_docs(shared_hub: HubProcess) -> None:
    with shared_hub.client() as client:
        assert "fogline_hub_requests_total" in client.get("/metrics").text
        spec = client.get("/openapi.json").json()
        assert "/v1/report" in spec["paths"]
        docs = client.get("/docs")
        # the schema is inline: the browser's own fetch would carry no token
        assert docs.status_code == 200 and "/v1/report" in docs.text


def test_healthz_stays_open_and_says_no_more(shared_hub: HubProcess) -> None:
    response = httpx.get(f"{shared_hub.url}/healthz", verify=tls(shared_hub.ca), timeout=10)
    assert response.status_code == 200
    assert set(response.json()) == {"status", "version"}


def test_the_loopback_listener_serves_metrics_without_a_token_and_nothing_else(
    hub_with_metrics_port: tuple[HubProcess, int],
) -> None:
    hub, port = hub_with_metrics_port
    plain = f"http://127.0.0.1:{port}"
    metrics = httpx.get(f"{plain}/metrics", timeout=10)
    assert metrics.status_code == 200 and "fogline_hub_requests_total" in metrics.text
    for path in ("/v1/devices", "/healthz", "/openapi.json", "/docs", "/v1/report"):
        assert httpx.get(f"{plain}{path}", timeout=10).status_code == 404, path
    assert httpx.post(f"{plain}/v1/report", json={}, timeout=10).status_code == 404
    # the TLS port still wants the token
    assert httpx.get(f"{hub.url}/metrics", verify=tls(hub.ca), timeout=10).status_code == 401


def test_a_metrics_listener_off_loopback_is_refused_unless_asked_for(tmp_path) -> None:
    result = subprocess.run(
        [
            *fogline_cmd(),
            "hub",
            "serve",
            "--data-dir",
            str(tmp_path / "hub"),
            "--metrics-listen",
            "0.0.0.0:9464",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert not (tmp_path / "hub").exists()  # refused before anything was created
