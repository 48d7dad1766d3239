"""A real agent enrolling with a real hub through a proxy that answers 408, 429, 503,
403 or 400: transient answers are retried (honouring Retry-After), refusals end it."""

import json

from tests.support.hub_proxy import HubProxy
from tests.support.processes import AgentProcess, HubProcess

ENROLL = "/v1/enroll"


def _events(agent: AgentProcess, name: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in agent.log_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == name]


def test_enrollment_retries_a_proxys_408_429_and_503_honouring_retry_after(
    hub: HubProcess, tmp_path
) -> None:
    with HubProxy(hub) as proxy:
        proxy.answer_next(ENROLL, 408, body=b"request timeout")
        proxy.answer_next(ENROLL, 429, {"Retry-After": "2"}, b"slow down")
        proxy.answer_next(ENROLL, 503, {"Retry-After": "1"}, b"<html>upstream restarting</html>")
        agent = AgentProcess(tmp_path / "patient", hub, "patient", hub.create_claim())
        agent.hub_url = proxy.url
        agent.start()
        try:
            device_id = agent.wait_enrolled(timeout_s=60)
            assert proxy.statuses(ENROLL) == [408, 429, 503, 200]
            arrivals = proxy.arrivals(ENROLL)
            # The hub (through its proxy) asked for 2 s and then 1 s: the agent
            # came back no earlier, whatever its own backoff would have drawn.
            assert arrivals[2] - arrivals[1] >= 2.0 - 0.05, arrivals
            assert arrivals[3] - arrivals[2] >= 1.0 - 0.05, arrivals
            retries = _events(agent, "agent.hub_unreachable")
            assert [e["during"] for e in retries] == ["enroll"] * 3
            assert "HTTP 429" in str(retries[1]["error"])
            assert hub.device("patient")["id"] == device_id
        finally:
            agent.stop()


def test_enrollment_stops_with_a_clear_error_when_the_hub_refuses_the_claim(
    hub: HubProcess, tmp_path
) -> None:
    with HubProxy(hub) as proxy:
        proxy.answer_next(ENROLL, 408)  # transient first: retried ...
        bad_claim = "fgc_aaaaaaaaaaaa." + "b" * 43
        agent = AgentProcess(tmp_path / "refused", hub, "refused", bad_claim)
        agent.hub_url = proxy.url
        agent.start()
        assert agent.proc is not None
        code = agent.proc.wait(timeout=60)  # ... then the hub's own 403 ends it
        log = agent.log_text()
        assert code == 1, log
        assert proxy.statuses(ENROLL) == [408, 403]
        assert "hub refused (403 forbidden): claim refused" in log
        assert "Traceback" not in log and "ExceptionGroup" not in log


def test_enrollment_stops_on_another_4xx_instead_of_retrying_a_bug(
    hub: HubProcess, tmp_path
) -> None:
    with HubProxy(hub) as proxy:
        proxy.answer_next(ENROLL, 400, body=b"request header too large")
        agent = AgentProcess(tmp_path / "bug", hub, "bug", hub.create_claim())
        agent.hub_url = proxy.url
        agent.start()
        assert agent.proc is not None
        code = agent.proc.wait(timeout=60)
        log = agent.log_text()
        assert code == 1, log
        assert proxy.statuses(ENROLL) == [400]
        assert "hub refused (400 error): request header too large" in log
        assert "Traceback" not in log
