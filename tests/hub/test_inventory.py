"""`GET /v1/devices` at scale against a real hub, on SQLite and PostgreSQL:
keyset pages (each device once, in order, also while devices enroll and
are removed), every filter, 422s naming the parameter, and reads that
scoped roles still see whole."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest

from fogline.manifest import parse_selector
from tests.support.device import enroll_device
from tests.support.inventory import fleet_devices, hub_db_url, insert_devices
from tests.support.people import as_token, user_with_token
from tests.support.postgres import create_database, throwaway_postgres
from tests.support.processes import HubProcess, free_port, list_devices, start_hub, wait_until

FLEET = 2500
NOW = dt.datetime.now(dt.UTC)
MAX_PAGES = 100


def _fleet_rows() -> Iterator[dict[str, Any]]:
    for row in fleet_devices(FLEET, NOW):
        # Long offline (or never seen): only devices that report in a test are online.
        if row["last_seen"] is not None:
            row["last_seen"] -= dt.timedelta(hours=2)
        yield row


def _desired(device_id: str, revision: str, applied: str | None, ok: bool) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "revision": revision,
        "document": {},
        "updated_at": NOW,
        "applied_revision": applied,
        "applied_ok": ok,
        "applied_error": None if ok else "module app failed its health check",
        "seq": 0,
        "previous_releases": [],
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    """A hub with 2,500 devices written into its database (node-000000 ...),
    three of them with a desired state: in sync, failed, pending."""
    root = tmp_path_factory.mktemp(f"inventory-{request.param}")
    postgres = throwaway_postgres() if request.param == "postgresql" else nullcontext(None)
    with postgres as pg:
        db_url = create_database(pg, f"inv_{free_port()}") if pg else None
        hub = start_hub(root / "hub", db_url=db_url)
        try:
            rows = list(_fleet_rows())
            desired = [
                _desired(rows[1]["id"], "r1", "r1", ok=True),
                _desired(rows[2]["id"], "r1", "r1", ok=False),
                _desired(rows[3]["id"], "r2", "r1", ok=True),
            ]
            assert insert_devices(hub_db_url(hub), rows, desired) == FLEET
            yield hub
        finally:
            hub.stop()


def _page(client: httpx.Client, **params: str) -> dict[str, Any]:
    response = client.get("/v1/devices", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _pages(client: httpx.Client, **params: str) -> list[list[dict[str, Any]]]:
    """Every page, following next_cursor (bounded)."""
    pages: list[list[dict[str, Any]]] = []
    query = dict(params)
    for _ in range(MAX_PAGES):
        page = _page(client, **query)
        pages.append(page["devices"])
        if page["next_cursor"] is None:
            return pages
        query["cursor"] = page["next_cursor"]
    raise AssertionError(f"more than {MAX_PAGES} pages")


def _names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["name"] for row in rows]


def _fleet_names(rows: list[dict[str, Any]]) -> list[str]:
    return [name for name in _names(rows) if name.startswith("node-")]


def test_paging_through_2500_devices_returns_each_once_in_name_order(fleet: HubProcess) -> None:
    expected = [f"node-{i:06d}" for i in range(FLEET)]
    with fleet.client() as client:
        pages = _pages(client, limit="100")
        backwards = _pages(client, limit="1000", order="desc")
        default = _page(client)
    listed = [row for page in pages for row in page]
    assert all(len(page) <= 100 for page in pages) and len(pages) >= 25
    assert _fleet_names(listed) == expected
    names = _names(listed)
    assert names == sorted(names) and len(set(names)) == len(names)
    assert _names([row for page in backwards for row in page]) == names[::-1]
    assert len(default["devices"]) == 100 and default["next_cursor"] is not None
    first = default["devices"][0]  # the old view, with its sync report, is kept
    assert {"id", "name", "labels", "status", "sync", "reported"} <= first.keys()


def test_paging_while_devices_enroll_and_are_removed_skips_and_repeats_none(
    fleet: HubProcess, tmp_path: Path
) -> None:
    claim = fleet.create_claim(labels="batch=churn", max_uses=10)
    insert_devices(
        hub_db_url(fleet),
        ({**row, "labels": {"batch": "churn"}} for row in fleet_devices(300, NOW, "churn")),
    )
    seen: list[str] = []
    query = {"selector": "batch=churn", "limit": "50"}
    removed_unseen = {"churn-000150", "churn-000299"}
    with fleet.client() as client:
        for page_no in range(MAX_PAGES):
            page = _page(client, **query)
            seen += _names(page["devices"])
            if page_no == 1:  # the cursor now sits after churn-000099
                for name in ("churn-000010-late", "churn-000120-late", "churn-zzz"):
                    enroll_device(fleet, claim, name, tmp_path)
                for name in (*removed_unseen, "churn-000020"):
                    response = client.delete(f"/v1/devices/{name}", params={"force": "true"})
                    assert response.status_code == 200, response.text
            if page["next_cursor"] is None:
                break
            query["cursor"] = page["next_cursor"]
    assert len(seen) == len(set(seen)), "a device was listed twice"
    assert seen == sorted(seen)
    stayed = {f"churn-{i:06d}" for i in range(300)} - removed_unseen - {"churn-000020"}
    assert stayed <= set(seen), sorted(stayed - set(seen))[:5]
    assert not removed_unseen & set(seen)
    assert "churn-000020" in seen  # it was on the first page, before its removal
    # Enrolled after the cursor: listed; before it: on no page of this walk.
    assert {"churn-000120-late", "churn-zzz"} <= set(seen)
    assert "churn-000010-late" not in seen


@pytest.mark.parametrize(
    "selector",
    [
        "site=site-7",
        "site=site-7,tier in (gold,silver)",
        "tier notin (gold,bronze),env=lab",
        "env!=prod",
        "site in (site-1,site-2),!retired",
        "fogline.dev/arch=arm64,site==site-99",
        "retired",
        "site=nowhere",
    ],
)
def test_a_selector_lists_what_a_deployment_with_it_would_select(
    fleet: HubProcess, selector: str
) -> None:
    with fleet.client() as client:
        everything = list_devices(client)
        selected = list_devices(client, selector=selector)
    wanted = parse_selector(selector)
    expected = [row["name"] for row in everything if wanted.matches(row["labels"])]
    assert _names(selected) == expected
    assert all(wanted.matches(row["labels"]) for row in selected)


def test_labels_set_by_enrollment_and_by_an_operator_are_selectable_at_once(
    fleet: HubProcess, tmp_path: Path
) -> None:
    claim = fleet.create_claim(labels="site=lisbon,tier=gold", max_uses=1)
    enroll_device(fleet, claim, "lisbon-1", tmp_path)
    with fleet.client() as client:
        assert _names(list_devices(client, selector="site=lisbon")) == ["lisbon-1"]
        changed = client.patch(
            "/v1/devices/node-000005/labels", json={"set": {"site": "lisbon"}, "remove": ["env"]}
        )
        assert changed.status_code == 200, changed.text
        assert _names(list_devices(client, selector="site=lisbon")) == ["lisbon-1", "node-000005"]
        assert "node-000005" not in _names(list_devices(client, selector="site=site-5"))
        unset = _names(list_devices(client, selector="!env,site=lisbon"))
        assert unset == ["lisbon-1", "node-000005"]  # neither has env now
        assert _names(list_devices(client, selector="env,site=lisbon")) == []
        removed = client.delete("/v1/devices/lisbon-1", params={"force": "true"})
        assert removed.status_code == 200, removed.text
        assert _names(list_devices(client, selector="site=lisbon")) == ["node-000005"]


def test_status_filters_online_offline_and_revoked(fleet: HubProcess, tmp_path: Path) -> None:
    claim = fleet.create_claim(labels="group=status", max_uses=2)
    online = enroll_device(fleet, claim, "status-online", tmp_path)
    enroll_device(fleet, claim, "status-revoked", tmp_path)
    assert online.report().status_code == 200
    with fleet.client() as client:
        assert client.post("/v1/devices/status-revoked/revoke").status_code == 200
        by_status = {
            status: _names(list_devices(client, status=status, selector="group=status"))
            for status in ("online", "offline", "revoked")
        }
        offline_fleet = _fleet_names(list_devices(client, status="offline"))
        # Online is 3.5 s since the last report: listing 2,500 devices on a
        # loaded box can take longer, so report again and list only these.
        assert online.report().status_code == 200
        everything = list_devices(client, selector="group=status")
    assert by_status == {"online": ["status-online"], "offline": [], "revoked": ["status-revoked"]}
    assert offline_fleet == [f"node-{i:06d}" for i in range(FLEET)]
    for status in ("online", "offline", "revoked"):  # the filter agrees with the view
        assert all(
            row["status"] == status for row in everything if row["name"] in by_status[status]
        ), [(r["name"], r["status"]) for r in everything]


def test_sync_filters_in_sync_pending_and_failed(fleet: HubProcess) -> None:
    with fleet.client() as client:
        in_sync = _fleet_names(list_devices(client, sync="in-sync"))
        failed = _fleet_names(list_devices(client, sync="failed"))
        error = _fleet_names(list_devices(client, sync="error"))
        pending = _fleet_names(list_devices(client, sync="pending"))
        rows = {row["name"]: row for row in list_devices(client, sync="error")}
    assert in_sync == ["node-000001"]
    assert failed == error == ["node-000002"]
    assert rows["node-000002"]["sync"]["status"] == "error"
    assert "node-000003" in pending and "node-000000" in pending  # behind; no desired state
    assert len(pending) == FLEET - 2


def test_module_filter_by_name_and_by_version(fleet: HubProcess) -> None:
    with fleet.client() as client:
        v13 = _fleet_names(list_devices(client, module="app@1.3"))
        any_version = _fleet_names(list_devices(client, module="app"))
        assert list_devices(client, module="other") == []
        assert list_devices(client, module="app@9.9") == []
        combined = _names(list_devices(client, module="app@1.3", selector="site=site-7"))
    assert v13 == [f"node-{i:06d}" for i in range(FLEET) if i % 4 == 3]
    assert len(any_version) == FLEET
    assert combined == [f"node-{i:06d}" for i in range(FLEET) if i % 4 == 3 and i % 100 == 7]


def test_sort_by_last_seen_puts_never_seen_devices_first_and_reverses_exactly(
    fleet: HubProcess,
) -> None:
    with fleet.client() as client:
        ascending = [r for p in _pages(client, sort="last_seen", limit="333") for r in p]
        descending = [
            r for p in _pages(client, sort="last_seen", order="desc", limit="1000") for r in p
        ]
    assert _names(descending) == _names(ascending)[::-1]
    seen = [row["last_seen"] for row in ascending]
    never = seen.index(next(s for s in seen if s is not None))
    assert all(s is None for s in seen[:never]) and never >= FLEET // 50
    stamps = [dt.datetime.fromisoformat(s) for s in seen[never:]]
    assert stamps == sorted(stamps)


def test_version_filter_is_the_reported_agent_version(fleet: HubProcess) -> None:
    with fleet.client() as client:
        v3 = _fleet_names(list_devices(client, version="0.3.0"))
        combined = _names(list_devices(client, version="0.3.0", selector="site=site-8"))
        assert list_devices(client, version="9.9.9") == []
    assert v3 == [f"node-{i:06d}" for i in range(FLEET) if i % 5 == 3]
    assert combined == [f"node-{i:06d}" for i in range(FLEET) if i % 5 == 3 and i % 100 == 8]


def test_health_filter_follows_the_alert_pass(fleet: HubProcess) -> None:
    """The fleet's seen devices last reported 2 h ago: the alert pass finds
    them offline, so critical; the levels together are the whole fleet."""
    seen = [f"node-{i:06d}" for i in range(FLEET) if i % 50 != 0]
    with fleet.client() as client:
        wait_until(
            lambda: _fleet_names(list_devices(client, health="critical")) == seen,
            60,
            "the alert pass to mark offline devices critical",
            interval_s=0.5,
        )
        pages = _pages(client, health="critical", limit="100")
        good = _fleet_names(list_devices(client, health="ok,warning"))
    assert _fleet_names([r for p in pages for r in p]) == seen  # name order, each once
    assert all(r["health"] == "critical" for p in pages for r in p)
    assert sorted(good + seen) == [f"node-{i:06d}" for i in range(FLEET)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "W1sic29ydCJdXQ"}, "cursor"),  # base64 of other JSON
        ({"cursor": "x" * 600}, "cursor"),
        ({"selector": "site in (a"}, "selector"),
        ({"selector": "si te=a"}, "selector"),
        ({"selector": "site=a,site=b"}, "selector"),
        ({"selector": "a=" + "v" * 70}, "selector"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"sync": "maybe"}, "sync"),
        ({"sort": "uptime"}, "sort"),
        ({"order": "sideways"}, "order"),
        ({"module": "app@"}, "module"),
        ({"module": "../etc"}, "module"),
        ({"health": "sick"}, "health"),
        ({"health": "ok,,critical"}, "health"),
        ({"version": "1.0 beta"}, "version"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(
    fleet: HubProcess, params: dict[str, str], field: str
) -> None:
    with fleet.client() as client:
        response = client.get("/v1/devices", params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid"
    assert [d["field"] for d in body["details"]] == [field], body
    assert body["message"].startswith(f"{field}: "), body


def test_a_cursor_is_refused_with_another_sort_or_order(fleet: HubProcess) -> None:
    with fleet.client() as client:
        first = _page(client, limit="10")
        cursor = first["next_cursor"]
        second = _page(client, limit="10", cursor=cursor)["devices"]
        assert second[0]["name"] > first["devices"][-1]["name"]
        for other in ({"sort": "last_seen"}, {"order": "desc"}):
            response = client.get("/v1/devices", params={"cursor": cursor, **other})
            assert response.status_code == 422, response.text
            assert response.json()["details"][0]["field"] == "cursor"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_a_scoped_role_still_reads_the_whole_fleet(fleet: HubProcess, role: str) -> None:
    token = user_with_token(fleet, f"berlin-{role}", role, {"site": "site-1"})
    with fleet.client() as admin, as_token(fleet, token) as scoped:
        for params in ({}, {"selector": "site=site-2"}, {"status": "offline", "limit": "7"}):
            mine = scoped.get("/v1/devices", params=params)
            assert mine.status_code == 200, mine.text
            assert _names(mine.json()["devices"]) == _names(_page(admin, **params)["devices"])
        assert _names(list_devices(scoped, selector="site=site-2"))  # outside its scope
