"""A device cannot write to the operator's terminal.

A device enrolled through the API reports facts, module statuses and log
lines full of terminal escape codes and Rich markup; every CLI view of them
shows them escaped, and JSON output keeps them exact.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support import device
from tests.support.processes import HubProcess

# Sets the window title, clears the screen, then Rich markup.
EVIL = "\x1b]0;pwned\x07\x1b[2J[red]x[/red]"
# Control characters of any kind in the output: only the newline belongs there.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J[red]x[/red]"


@pytest.fixture(scope="module")
def evil_device(
    shared_hub: HubProcess, tmp_path_factory: pytest.TempPathFactory
) -> device.TestDevice:
    evil = device.enroll_device(
        shared_hub, shared_hub.create_claim(), "evil", tmp_path_factory.mktemp("evil")
    )
    facts = {**device.FACTS, "hostname": EVIL, "arch": EVIL, "agent_version": EVIL, "os": EVIL}
    modules = {
        "modules": {
            "web": {"name": "web", "version": EVIL, "state": EVIL, "last_error": EVIL},
            EVIL: {"name": EVIL, "version": "1", "state": "running"},
        },
        "progress": {"web": {"version": "2", "state": "DOWNLOAD", "error": EVIL}},
        "drift": [{"module": "web", "kind": "files", "detail": EVIL}],
    }
    with evil.client() as client:
        response = client.post("/v1/report", json={"facts": facts, "modules": modules})
        assert response.status_code == 200, response.text
    evil.upload([(1, "logs/web", {"stream": "stderr", "line": EVIL})])
    return evil


def _assert_escaped(output: str, *, expect_shown: bool = True) -> None:
    raw = sorted({hex(ord(c)) for c in RAW_CONTROL.findall(output)})
    assert not raw, f"raw control characters reached the terminal: {raw}\n{output!r}"
    if expect_shown:
        assert SHOWN in output, output  # shown, visibly and literally


@pytest.mark.parametrize(
    "args",
    [
        ("devices", "show", "evil", "-o", "table"),
        ("logs", "evil", "web"),
    ],
    ids=["devices-show", "logs"],
)
def test_device_text_is_escaped_in_every_view(
    shared_hub: HubProcess, evil_device: device.TestDevice, args: tuple[str, ...]
) -> None:
    _assert_escaped(shared_hub.cli(*args).stdout)


def test_telemetry_csv_carries_payloads_as_escaped_json(
    shared_hub: HubProcess, evil_device: device.TestDevice
) -> None:
    args = ("telemetry", "query", "--device", "evil", "--stream", "logs/web", "-o", "csv")
    output = shared_hub.cli(*args).stdout
    _assert_escaped(output, expect_shown=False)
    assert "\\u001b]0;pwned" in output


@pytest.mark.parametrize(
    "args",
    [
        ("devices", "ls", "-o", "table"),
        ("telemetry", "query", "--device", "evil", "--stream", "logs/web", "-o", "table"),
    ],
    ids=["devices-ls", "telemetry-table"],
)
def test_device_text_is_escaped_in_tables(
    shared_hub: HubProcess, evil_device: device.TestDevice, args: tuple[str, ...]
) -> None:
    output = shared_hub.cli(*args).stdout
    # Table cells may wrap a long value over lines: check the pieces.
    _assert_escaped(output, expect_shown=False)
    assert "\\x1b]0;pwned" in output or "\\x1b]0;pwne" in output, output
    assert "[red]" in output, output


def test_json_output_keeps_device_text_exact(
    shared_hub: HubProcess, evil_device: device.TestDevice
) -> None:
    row = json.loads(shared_hub.cli("devices", "show", "evil", "-o", "json").stdout)
    assert row["hostname"] == EVIL
    assert row["reported"]["modules"]["modules"]["web"]["last_error"] == EVIL
    rows = json.loads(
        shared_hub.cli("telemetry", "query", "--stream", "logs/web", "-o", "json").stdout
    )
    assert rows[0]["payload"]["line"] == EVIL
