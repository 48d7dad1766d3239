"""Logs people can read on a terminal, JSON lines everywhere else."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import signal
from pathlib import Path

import pytest

from fogline._log import (
    LOG_FORMAT_ENV,
    HumanFormatter,
    JsonFormatter,
    LogFormat,
    resolve_log_format,
)
from tests.support.processes import start_hub

# `2026-11-24T21:30:00.123+01:00 INFO  fogline.hub  hub.starting  port=8443`
HUMAN_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d) "
    r"(?P<level>[A-Z]+) +(?P<logger>\S+)  (?P<event>.*)$"
)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(message: str, level: int = logging.INFO, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("fogline.hub", level, __file__, 1, message, None, None)
    record.fields = fields
    return record


def test_the_human_format_is_one_line_in_local_iso_time_with_key_value_fields() -> None:
    record = _record("hub.starting", host="127.0.0.1", port=8443, data_dir="/var/lib/my hub")
    line = HumanFormatter().format(record)
    match = HUMAN_LINE.match(line)
    assert match, line
    when = dt.datetime.fromisoformat(match["ts"])
    assert when.utcoffset() == dt.datetime.fromtimestamp(record.created).astimezone().utcoffset()
    assert abs(when.timestamp() - record.created) < 0.001
    assert match["level"] == "INFO" and match["logger"] == "fogline.hub"
    assert match["event"] == 'hub.starting  host=127.0.0.1 port=8443 data_dir="/var/lib/my hub"'


def test_the_human_format_redacts_secrets_and_escapes_what_a_device_chose() -> None:
    record = _record(
        "device \x1b]0;pwned\x07", logging.WARNING, claim_token="fgc_secret", name="a\x1b[2Jb"
    )
    line = HumanFormatter().format(record)
    assert "fgc_secret" not in line and "claim_token=[redacted]" in line
    assert "\x1b" not in line and "\\x1b]0;pwned" in line and "a\\x1b[2Jb" in line
    assert " WARNING " in line


def test_the_json_format_is_unchanged_one_object_per_line() -> None:
    line = JsonFormatter().format(_record("hub.starting", port=8443, token="fga_x"))
    assert json.loads(line) | {"ts": 0} == {
        "ts": 0,
        "level": "info",
        "logger": "fogline.hub",
        "event": "hub.starting",
        "port": 8443,
        "token": "[redacted]",
    }


def test_the_format_follows_the_option_then_the_environment_then_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(LOG_FORMAT_ENV, raising=False)
    assert resolve_log_format(None, _Terminal()) is LogFormat.human
    assert resolve_log_format(None, io.StringIO()) is LogFormat.json  # a pipe or a file
    assert resolve_log_format("json", _Terminal()) is LogFormat.json
    monkeypatch.setenv(LOG_FORMAT_ENV, "human")
    assert resolve_log_format(None, io.StringIO()) is LogFormat.human
    assert resolve_log_format("json", io.StringIO()) is LogFormat.json
    monkeypatch.setenv(LOG_FORMAT_ENV, "yaml")  # unknown: the default applies
    assert resolve_log_format(None, io.StringIO()) is LogFormat.json


def test_a_hub_started_with_log_format_human_logs_readable_lines(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub", extra_args=["--log-format", "human"])
    hub.stop(signal.SIGTERM)
    lines = [line for line in hub.log_path.read_text().splitlines() if line.strip()]
    starting = [line for line in lines if "hub.starting" in line]
    assert starting and all(HUMAN_LINE.match(line) for line in lines), lines[:5]
    assert f"port={hub.port}" in starting[0]
    assert not any(line.startswith("{") for line in lines)


def test_a_hub_whose_stderr_is_a_file_logs_json_lines(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub")
    hub.stop(signal.SIGTERM)
    lines = [json.loads(line) for line in hub.log_path.read_text().splitlines() if line.strip()]
    assert any(line["event"] == "hub.starting" for line in lines)
    # A clean stop logs no error: nothing from the lifespan, no CancelledError.
    assert not [line for line in lines if line["level"] in ("error", "critical")], lines
