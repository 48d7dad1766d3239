"""`GET /v1/telemetry`: the newest records with `tail`, and 404 for an unknown device.

Real hub; a device enrolled through the API uploads real batches.
"""

import json
from pathlib import Path

from tests.support.device import enroll_device
from tests.support.processes import HubProcess


def _lines(rows: list[dict]) -> list[str]:
    return [row["payload"]["line"] for row in rows]


def test_tail_answers_the_newest_records_oldest_first(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    node = enroll_device(shared_hub, shared_hub.create_claim(), "tailed", tmp_path)
    node.upload([(i, "logs/web", {"stream": "stdout", "line": f"line {i}"}) for i in range(1, 8)])
    with shared_hub.client() as client:
        params = {"device": "tailed", "stream": "logs/web", "since": "1h"}
        first = client.get("/v1/telemetry", params={**params, "limit": 2})
        assert _lines(first.json()) == ["line 1", "line 2"]
        newest = client.get("/v1/telemetry", params={**params, "tail": 3})
        assert newest.status_code == 200, newest.text
        assert _lines(newest.json()) == ["line 5", "line 6", "line 7"]
        both = client.get("/v1/telemetry", params={**params, "limit": 2, "tail": 3})
        assert both.status_code == 422, both.text
        assert both.json()["details"] == [
            {"field": "tail", "reason": "give limit or tail, not both"}
        ]
    # The CLI asks the hub for the newest lines: no window to halve.
    tail = shared_hub.cli("logs", "tailed", "web", "--tail", "2").stdout.split()
    assert tail == ["line", "6", "line", "7"]
    shown = shared_hub.cli("telemetry", "query", "--device", "tailed", "--tail", "1", "-o", "json")
    assert _lines(json.loads(shown.stdout)) == ["line 7"]


def test_an_unknown_device_is_404_like_devices_show(shared_hub: HubProcess) -> None:
    with shared_hub.client() as client:
        query = client.get("/v1/telemetry", params={"device": "ghost", "stream": "logs/web"})
        show = client.get("/v1/devices/ghost")
    assert query.status_code == show.status_code == 404
    assert query.json()["error"] == show.json()["error"]
    assert "ghost" in query.json()["message"]
