"""`fogline devices ls` pages, filters and sorts on the hub: --selector,
--status, --sync, --module, --sort/--desc, --limit, --cursor and --all."""

import datetime as dt
import json
from collections.abc import Iterator

import pytest

from tests.support.inventory import fleet_devices, hub_db_url, insert_devices
from tests.support.processes import HubProcess, start_hub

FLEET = 250


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = start_hub(tmp_path_factory.mktemp("devices-ls") / "hub")
    try:
        insert_devices(hub_db_url(hub), fleet_devices(FLEET, dt.datetime.now(dt.UTC)))
        yield hub
    finally:
        hub.stop()


def _names(stdout: str) -> list[str]:
    return [row["name"] for row in json.loads(stdout)]


def test_one_page_by_default_and_the_next_cursor_on_stderr(fleet: HubProcess) -> None:
    first = fleet.cli("devices", "ls", "--limit", "40", "-o", "json")
    assert _names(first.stdout) == [f"node-{i:06d}" for i in range(40)]
    assert "--cursor " in first.stderr
    cursor = first.stderr.split("--cursor ", 1)[1].split()[0]
    second = fleet.cli("devices", "ls", "--limit", "40", "--cursor", cursor, "-o", "json")
    assert _names(second.stdout) == [f"node-{i:06d}" for i in range(40, 80)]


def test_all_follows_every_page_with_progress_on_stderr(fleet: HubProcess) -> None:
    result = fleet.cli("devices", "ls", "--all", "--limit", "60", "-o", "json")
    assert _names(result.stdout) == [f"node-{i:06d}" for i in range(FLEET)]
    assert "60 devices (1 pages)" in result.stderr and "--cursor" not in result.stderr


def test_filters_and_sort_reach_the_hub(fleet: HubProcess) -> None:
    selected = fleet.cli(
        "devices", "ls", "--all", "-l", "site in (site-1,site-2),env!=lab", "--desc", "-o", "json"
    )
    expected = [f"node-{i:06d}" for i in range(FLEET) if i % 100 in (1, 2)]
    assert _names(selected.stdout) == expected[::-1]
    module = fleet.cli("devices", "ls", "--all", "--module", "app@1.2", "-o", "json")
    assert _names(module.stdout) == [f"node-{i:06d}" for i in range(FLEET) if i % 4 == 2]
    pending = fleet.cli("devices", "ls", "--all", "--sync", "pending", "--status", "offline")
    assert "node-000249" in pending.stdout
    assert fleet.cli("devices", "ls", "--status", "revoked", "-o", "json").stdout.strip() == "[]"
    by_seen = _names(fleet.cli("devices", "ls", "--sort", "last_seen", "-o", "json").stdout)
    never_seen = {f"node-{i:06d}" for i in range(0, FLEET, 50)}  # ties: by id
    assert set(by_seen[:5]) == never_seen


def test_a_bad_selector_is_one_line_naming_it(fleet: HubProcess) -> None:
    result = fleet.cli("devices", "ls", "--selector", "site in (a", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "selector" in result.stderr, result.stderr
    assert "never closed" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    usage = fleet.cli("devices", "ls", "--limit", "5000", check=False)
    assert usage.returncode == 2  # Click's own: the hub is not asked
