"""The `fogline` command as an operator types it."""

import json

import pytest

from tests.support.device import enroll_device
from tests.support.hub_proxy import HubProxy


def test_claim_create_prints_only_the_token(shared_hub):
    result = shared_hub.cli(
        "claim",
        "create",
        "--labels",
        "site=plant-7,tier=gold",
        "--max-uses",
        "100",
        "--expires",
        "24h",
    )
    assert result.stdout.count("\n") == 1
    assert result.stdout.startswith("fgc_")
    claims = json.loads(shared_hub.cli("claim", "ls", "-o", "json").stdout)
    mine = [c for c in claims if result.stdout.strip().split(".")[0].endswith(c["id"])]
    assert (
        mine
        and mine[0]["max_uses"] == 100
        and mine[0]["labels"] == {"site": "plant-7", "tier": "gold"}
    )


def test_devices_ls_show_and_label(shared_hub, tmp_path):
    device = enroll_device(shared_hub, shared_hub.create_claim(), "cli-node", tmp_path)
    rows = json.loads(shared_hub.cli("devices", "ls", "--output", "json").stdout)
    row = next(r for r in rows if r["name"] == "cli-node")
    assert {"id", "labels", "status", "last_seen", "agent_version"} <= row.keys()
    table = shared_hub.cli("devices", "ls", "--output", "table").stdout
    assert "cli-node" in table and "STATUS" in table
    shared_hub.cli("devices", "label", device.device_id, "zone=north", "rack=r1")
    shared_hub.cli("devices", "label", "cli-node", "rack-")
    shown = json.loads(shared_hub.cli("devices", "show", "cli-node", "-o", "json").stdout)
    assert shown["labels"]["zone"] == "north" and "rack" not in shown["labels"]
    assert "zone=north" in shared_hub.cli("devices", "show", "cli-node", "-o", "table").stdout


def test_errors_are_one_line_without_traceback(shared_hub):
    result = shared_hub.cli("devices", "show", "ghost", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:") and "ghost" in result.stderr
    assert "Traceback" not in result.stderr
    wrong = shared_hub.cli("devices", "ls", "--token", "fga_aaaaaaaaaaaa." + "b" * 43, check=False)
    assert wrong.returncode == 1 and "401" in wrong.stderr


def test_unreachable_hub_is_a_clear_error(shared_hub):
    result = shared_hub.cli("devices", "ls", "--hub", "https://127.0.0.1:1", check=False)
    assert result.returncode == 1
    assert "cannot reach the hub" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            503,
            b'{"error": "unavailable", "message": "the hub is stopping"}',
            "HTTP 503 (unavailable",
        ),
        (502, b"<html>bad gateway</html>", "HTTP 502"),
        (302, b"", "HTTP 302"),  # a captive portal or a misrouted proxy: no usable answer
        (403, b'{"error": "forbidden", "message": "needs the admin role"}', "hub refused (403"),
    ],
)
def test_a_proxys_answer_is_one_clear_line(shared_hub, status, body, expected):
    with HubProxy(shared_hub) as proxy:
        proxy.answer_next("/v1/devices", status, {"Location": "https://portal.example/"}, body)
        result = shared_hub.cli("devices", "ls", "--hub", proxy.url, check=False)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("error:") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_bad_label_syntax_is_a_usage_error(shared_hub):
    result = shared_hub.cli("claim", "create", "--labels", "no-equals", check=False)
    assert result.returncode == 2
    assert "key=value" in result.stderr


def test_missing_token_is_explained(shared_hub):
    result = shared_hub.cli("devices", "ls", "--token", "", check=False)
    assert result.returncode == 1 and "FOGLINE_TOKEN" in result.stderr
