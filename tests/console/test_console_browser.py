"""The console in a real browser (Debian's chromium, driven by Playwright)
against a real hub and three real agents.

One hub, three agents and one browser for the module: node-0 and node-1 are
in ring a (the rollout), node-2 in ring b (the crash-looping module). Each
test saves screenshots of the pages it saw into its own tmp_path.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.console import SESSION_COOKIE
from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.modules import release
from tests.support.people import add_user
from tests.support.processes import (
    FAST_FORECAST_HUB_ARGS,
    AgentProcess,
    HubProcess,
    free_port,
    start_hub,
    wait_until,
)

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "console tests only"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium: run scripts/setup-system.sh as root",
)
playwright_api = pytest.importorskip("playwright.sync_api")

ROLLOUT = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: ring-a}
    spec:
      selector: {matchLabels: {ring: a}}
      config: {rate_hz: %d}
      rollout: {waves: [1, 100%%], bake: 6s, onFailure: pause}
    """)


@dataclass
class Fleet:
    hub: HubProcess
    agents: list[AgentProcess]
    root: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("console-browser")
    hub = start_hub(root / "hub")
    agents: list[AgentProcess] = []
    try:
        add_user(hub, "ops", "admin", password=PASSWORD)
        ring_a = hub.create_claim(labels="ring=a", max_uses=2)
        ring_b = hub.create_claim(labels="ring=b", max_uses=1)
        for index, claim in enumerate((ring_a, ring_a, ring_b)):
            agent = AgentProcess(root / f"node-{index}", hub, f"node-{index}", claim)
            agent.start()
            agents.append(agent)
        for agent in agents:
            agent.wait_enrolled(60)
        # First (ungated) rollout of ring a: the test's rollout is a change.
        (root / "ring-a.yaml").write_text(ROLLOUT % 1)
        hub.cli("apply", "-f", str(root / "ring-a.yaml"))
        wait_until(
            lambda: all(d["sync"]["status"] == "in-sync" for d in hub.devices(selector="ring=a")),
            60,
            "ring a in sync",
        )
        yield Fleet(hub, agents, root)
    finally:
        for agent in agents:
            agent.stop()
        hub.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


def _context(browser: Any) -> Any:
    # The hub's certificate is issued by the fleet's own CA.
    return browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})


@pytest.fixture(scope="module")
def page(browser: Any, fleet: Fleet) -> Iterator[Any]:
    """A browser page signed in as `ops` (admin) with its password."""
    context = _context(browser)
    try:
        signed_in = context.new_page()
        signed_in.set_default_timeout(30_000)
        signed_in.goto(f"{fleet.hub.url}/console")
        assert signed_in.url.endswith("/console/sign-in")  # no session: sent to sign in
        signed_in.get_by_label("User", exact=True).fill("ops")
        signed_in.get_by_label("Password", exact=True).fill(PASSWORD)
        signed_in.get_by_role("button", name="Sign in", exact=True).click()
        signed_in.wait_for_url(f"{fleet.hub.url}/console")
        cookie = next(c for c in context.cookies() if c["name"] == SESSION_COOKIE)
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert cookie["value"] not in signed_in.url
        yield signed_in
    finally:
        context.close()


def _shot(page: Any, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)
    assert (directory / f"{name}.png").stat().st_size > 1000


def _online(page: Any) -> str:
    return str(page.locator("table.counts tr", has_text="online").locator("td").inner_text())


def test_the_overview_shows_three_devices_and_every_page_renders(
    page: Any, fleet: Fleet, tmp_path: Path
) -> None:
    def three_online() -> bool:
        page.goto(f"{fleet.hub.url}/console")
        return _online(page) == "3"

    wait_until(three_online, 30, "three devices online in the overview")
    assert "user:ops" in page.locator("header").inner_text()
    _shot(page, tmp_path, "overview")
    for name in ("devices", "rollouts", "deployments", "releases", "audit", "telemetry"):
        page.get_by_role("link", name=name.capitalize(), exact=True).click()
        page.wait_for_url(f"{fleet.hub.url}/console/{name}")
        assert page.locator("h1").count() == 1
        _shot(page, tmp_path, name)
    page.goto(f"{fleet.hub.url}/console/devices")
    assert page.locator("tr.device-row").count() == 3


def test_a_device_page_draws_health_charts_and_labels_the_device(
    page: Any, fleet: Fleet, tmp_path: Path
) -> None:
    page.goto(f"{fleet.hub.url}/console/devices?name=node-0")
    page.get_by_role("link", name="node-0", exact=True).click()
    page.wait_for_url(f"{fleet.hub.url}/console/devices/*")

    def cpu_points() -> int:
        page.reload()
        line = page.locator('svg.chart[aria-label="CPU (%)"] polyline')
        return len((line.first.get_attribute("points") or "").split()) if line.count() else 0

    assert wait_until(lambda: cpu_points() >= 2, 40, "a CPU line of two points or more")
    assert page.locator("svg.chart").count() == 4  # CPU, memory, disk, temperature
    assert page.locator('svg.chart[aria-label="Memory used (%)"] polyline').count() >= 1
    _shot(page, tmp_path, "device")

    page.get_by_label("Set (key=value, comma separated)").fill("site=lab, floor=3")
    page.get_by_role("button", name="Save labels").click()
    page.wait_for_load_state()
    labels = page.locator("#labels").inner_text()
    assert "site=lab" in labels and "floor=3" in labels
    assert fleet.hub.device("node-0")["labels"]["site"] == "lab"
    _shot(page, tmp_path, "device-labelled")


def _status(hub: HubProcess, ref: str) -> dict[str, Any]:
    return dict(json.loads(hub.cli("rollout", "status", ref, "-o", "json").stdout))


def test_a_rollout_advances_live_and_is_paused_from_the_page(
    page: Any, fleet: Fleet, tmp_path: Path
) -> None:
    hub = fleet.hub
    manifest = fleet.root / "ring-a.yaml"
    manifest.write_text(ROLLOUT % 2)
    hub.cli("apply", "-f", str(manifest))
    rollout = _status(hub, "ring-a")
    assert rollout["state"] == "running" and rollout["waves_total"] == 2
    page.goto(f"{hub.url}/console/rollouts/{rollout['id']}")
    page.evaluate("window.stillTheSamePage = true")
    assert page.locator("#rollout-wave").inner_text() == "1"
    _shot(page, tmp_path, "rollout-wave-1")
    # The server-sent events bring wave 2 into this very page.
    playwright_api.expect(page.locator("#rollout-wave")).to_have_text("2", timeout=60_000)
    assert page.evaluate("window.stillTheSamePage") is True  # no reload brought it
    # Pause at once: wave 2 bakes 6 s and then the rollout completes.
    page.get_by_role("button", name="Pause").click()
    page.wait_for_url(f"{hub.url}/console/rollouts/{rollout['id']}")
    assert page.evaluate("window.stillTheSamePage") is None  # the form's answer is a new page
    assert _status(hub, "ring-a")["state"] == "paused"
    assert page.locator("#rollout-state").inner_text() == "paused"
    assert page.get_by_role("button", name="Resume").count() == 1
    _shot(page, tmp_path, "rollout-paused")
    with hub.client() as admin:
        entries = admin.get("/v1/audit", params={"action": "rollout.pause"}).json()
    assert [(e["actor"], e["outcome"]) for e in entries] == [("user:ops", "ok")]


def test_an_alert_appears_when_a_module_crash_loops(
    page: Any, fleet: Fleet, tmp_path: Path
) -> None:
    hub = fleet.hub
    keys = tmp_path / "keys"
    created = hub.cli("keys", "create", "ci", "--dir", str(keys))
    hub.cli("apply", "-f", "-", input_text=created.stdout)
    crash_file = tmp_path / "crash"
    release(hub, tmp_path, keys / "ci.key", "1.0.0", free_port(), crash_file=crash_file)
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        textwrap.dedent("""\
            apiVersion: fogline.dev/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              selector: {matchLabels: {ring: b}}
              modules:
                - name: web
                  release: web@1.0.0
            """)
    )
    hub.cli("apply", "-f", str(manifest))

    def web() -> dict[str, Any] | None:
        modules = (hub.device("node-2").get("reported") or {}).get("modules") or {}
        found = (modules.get("modules") or {}).get("web")
        return found if found and found.get("state") == "healthy" and found.get("pid") else None

    pid = int(wait_until(web, 60, "web healthy on node-2")["pid"])
    crash_file.touch()
    os.kill(pid, signal.SIGKILL)  # it restarts, and exits at once from now on

    def alert_shown() -> bool:
        page.goto(f"{hub.url}/console")
        return page.locator("tr.alert-row", has_text="crash-loop").count() == 1

    wait_until(alert_shown, 60, "the crash-loop alert in the overview", interval_s=1)
    row = page.locator("tr.alert-row", has_text="crash-loop")
    assert "node-2" in row.inner_text() and "web" in row.inner_text()
    _shot(page, tmp_path, "overview-alert")
    row.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url(f"{hub.url}/console")
    acked = page.locator("tr.alert-row", has_text="crash-loop")
    assert "user:ops" in acked.inner_text() and acked.get_by_role("button").count() == 0
    assert _alert_acked_by(hub, "crash-loop") == "user:ops"
    page.get_by_role("link", name="Releases", exact=True).click()
    release_row = page.locator("tr", has_text="1.0.0")
    assert "sha256:" in release_row.inner_text()
    assert release_row.get_by_role("link", name="web").count() == 1  # deployed by `web`
    _shot(page, tmp_path, "releases")


def _alert_acked_by(hub: HubProcess, kind: str) -> str | None:
    alerts = json.loads(hub.cli("alerts", "ls", "--active", "-o", "json").stdout)
    return next(a["acked_by"] for a in alerts if a["kind"] == kind)


def test_refusals_in_the_browser(browser: Any, fleet: Fleet, page: Any) -> None:
    hub = fleet.hub
    stranger = _context(browser)
    try:
        anonymous = stranger.new_page()
        anonymous.goto(f"{hub.url}/console/devices")
        assert anonymous.url == f"{hub.url}/console/sign-in"
        real = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
        stranger.add_cookies([{**real, "value": real["value"][:-3] + "xyz"}])
        anonymous.goto(f"{hub.url}/console/devices")
        assert anonymous.url == f"{hub.url}/console/sign-in"  # forged: refused
        assert not [c for c in stranger.cookies() if c["name"] == SESSION_COOKIE]  # and forgotten
    finally:
        stranger.close()
    # The signed-in browser itself, posting without the page's CSRF token.
    refused = page.request.post(
        f"{hub.url}/console/devices/node-1/labels", form={"set": "stolen=yes"}
    )
    assert refused.status == 403
    assert "stolen" not in hub.device("node-1")["labels"]
    with httpx.Client(base_url=hub.url, verify=False, timeout=10) as outside:
        assert outside.get("/console").status_code == 303


TICKER = textwrap.dedent("""\
    import itertools, time

    for n in itertools.count():
        print(f"tick {n} <b>not bold</b>", flush=True)
        time.sleep(1)
    """)


def test_a_device_page_tails_a_module_log_live(page: Any, fleet: Fleet, tmp_path: Path) -> None:
    hub = fleet.hub
    keys = tmp_path / "keys"
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "logs", "--dir", str(keys)).stdout
    )
    source = tmp_path / "ticker"
    source.mkdir()
    (source / "ticker.py").write_text(TICKER)
    (source / "fogline-module.yaml").write_text(
        "name: ticker\nversion: 1.0.0\ncommand: [python3, ticker.py]\n"
        "health: {uptime: 1s}\narchitectures: [any]\n"
    )
    archive = tmp_path / "ticker.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(keys / "logs.key"))
    hub.cli("release", "push", str(archive))
    manifest = tmp_path / "ticker.yaml"
    manifest.write_text(
        textwrap.dedent("""\
            apiVersion: fogline.dev/v1
            kind: Deployment
            metadata: {name: ticker}
            spec:
              selector: {matchLabels: {ring: b}}
              priority: 10  # beside `web` (the crash-loop test's) on node-2
              modules:
                - name: ticker
                  release: ticker@1.0.0
            """)
    )
    hub.cli("apply", "-f", str(manifest))
    node = hub.device("node-2")

    def shipped() -> bool:
        with hub.client() as client:
            params = {"device": node["id"], "stream": "logs/ticker", "tail": 2}
            return len(client.get("/v1/telemetry", params=params).json()) >= 2

    wait_until(shipped, 60, "two ticker lines at the hub")
    page.goto(f"{hub.url}/console/devices/{node['id']}")
    page.get_by_label("Log", exact=True).select_option("ticker")
    page.get_by_role("button", name="Show", exact=True).click()
    page.wait_for_url(f"{hub.url}/console/devices/{node['id']}?log=ticker")
    page.evaluate("window.stillTheSamePage = true")
    lines = page.locator("#logs .log-line")
    assert lines.count() >= 2
    newest = lines.last.inner_text()
    assert newest.startswith("tick ") and newest.endswith("<b>not bold</b>")  # text, not markup
    assert page.locator("#logs b").count() == 0
    _shot(page, tmp_path, "device-logs")
    # The server-sent events bring a newer line into this very page.
    playwright_api.expect(lines.last).not_to_have_text(newest, timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True
    assert int(lines.last.inner_text().split()[1]) > int(newest.split()[1])
    _shot(page, tmp_path, "device-logs-tailed")


def test_the_pages_fit_a_tablet(browser: Any, fleet: Fleet, page: Any, tmp_path: Path) -> None:
    hub = fleet.hub
    tablet = browser.new_context(ignore_https_errors=True, viewport={"width": 768, "height": 1024})
    try:
        tablet.add_cookies([c for c in page.context.cookies() if c["name"] == SESSION_COOKIE])
        seen = tablet.new_page()
        seen.set_default_timeout(30_000)
        node = hub.device("node-2")
        # A label as long as labels go, with no space to break a line at.
        long_label = {"team.example.com/maintainer": "a" * 63}
        with hub.client() as admin:
            labelled = admin.patch(f"/v1/devices/{node['id']}/labels", json={"set": long_label})
            assert labelled.status_code == 200, labelled.text
        for name, path in (
            ("overview", "/console"),
            ("devices", "/console/devices"),
            ("device", f"/console/devices/{node['id']}?log=_agent"),
        ):
            seen.goto(f"{hub.url}{path}")
            assert seen.locator("h1").count() == 1, name
            wide, inner = seen.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert wide <= inner, f"{name}: {wide} px wide in a {inner} px viewport"
            for link in ("Overview", "Devices", "Rollouts", "Deployments", "Releases", "Audit"):
                assert seen.get_by_role("link", name=link, exact=True).is_visible(), (name, link)
            _shot(seen, tmp_path, f"tablet-{name}")
    finally:
        tablet.close()


# -- canary analysis verdicts and insights (issue #17) ---------------------------------------
#
# A hub of its own with fast forecasts (hours, in a real fleet: seconds here)
# and fake devices reporting over mTLS: twenty on two sites for a canary
# analysis (tests/hub/test_canary_e2e.py's fleet), one whose disk fills up,
# three whose `web@2.1.0` crash-loops.


@dataclass
class AiopsHub:
    hub: HubProcess
    canaries: Any  # tests.hub.test_canary_e2e.Fleet
    disk: TestDevice
    looping: list[TestDevice]
    root: Path


@pytest.fixture(scope="module")
def aiops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AiopsHub]:
    from tests.hub.test_canary_e2e import SITES
    from tests.hub.test_canary_e2e import Fleet as CanaryFleet

    root = tmp_path_factory.mktemp("console-aiops")
    hub = start_hub(
        root / "hub",
        extra_args=list(FAST_FORECAST_HUB_ARGS),
    )
    try:
        devices = []
        for site in SITES:
            claim = hub.create_claim(labels=f"site={site}", max_uses=10)
            devices += [enroll_device(hub, claim, f"{site}-{i}", root) for i in range(10)]
        # The canary fleet keeps one connection per device: closed here, or
        # the garbage collector's unclosed-socket warnings fail a later test.
        with closing(CanaryFleet(hub, devices)) as canaries:
            canaries.pump()  # online, on the empty document
            others = hub.create_claim(labels="site=c", max_uses=4)
            disk = enroll_device(hub, others, "node-17", root)
            looping = [enroll_device(hub, others, f"loop-{i}", root) for i in range(3)]
            yield AiopsHub(hub, canaries, disk, looping, root)
    finally:
        hub.stop()


def _session_page(browser: Any, hub: HubProcess) -> Any:
    """A page holding the hub's admin token as its console session (what
    signing in with a token gives)."""
    context = _context(browser)
    context.add_cookies(
        [
            {
                "name": SESSION_COOKIE,
                "value": hub.token,
                "url": hub.url,
                "secure": True,
                "httpOnly": True,
                "sameSite": "Strict",
            }
        ]
    )
    seen = context.new_page()
    seen.set_default_timeout(30_000)
    return seen


def test_the_rollout_page_shows_each_analysis_metrics_verdict_live(
    browser: Any, aiops: AiopsHub, tmp_path: Path
) -> None:
    from tests.hub.test_canary_e2e import manifest
    from tests.support.rollout_device import desired_revision

    hub, canaries = aiops.hub, aiops.canaries
    before = {d.name: desired_revision(d) for d in canaries.devices}
    # A longer bake than the canary test's: this machine also runs a browser.
    (tmp_path / "web.yaml").write_text(manifest(1).replace("bake: 3s", "bake: 10s"))
    hub.cli("apply", "-f", str(tmp_path / "web.yaml"))
    rollout = _status(hub, "web")
    now = {d.name: desired_revision(d) for d in canaries.devices}
    # The canaries of the new revision leak 5 MB a second.
    canaries.leaky |= {now[n] for n in now if now[n] != before[n]}
    canaries.leak_mb_s = 5.0

    seen = _session_page(browser, hub)
    try:
        seen.goto(f"{hub.url}/console/rollouts/{rollout['id']}")
        assert seen.locator("#analysis-pending").count() == 1  # analysis declared, not run yet
        seen.evaluate("window.stillTheSamePage = true")
        _shot(seen, tmp_path, "rollout-analysis-pending")

        def stopped() -> bool:
            canaries.pump()
            with hub.client() as client:
                state = client.get("/v1/rollouts/web").json()["state"]
            return state in ("paused", "completed", "rolled-back")

        wait_until(stopped, 90, "the rollout stopped by its analysis")
        # The server-sent events bring the verdicts into this very page.
        wave = seen.locator("table.analysis-wave")
        playwright_api.expect(wave).to_have_count(1, timeout=30_000)
        assert seen.evaluate("window.stillTheSamePage") is True
        [analysed] = _status(hub, "web")["analysis"]["waves"]
        assert "Wave 1: fail" in wave.locator("caption").inner_text(), json.dumps(analysed)
        leak = wave.locator("tr.metric", has_text="module-rss-growth(web)")
        assert leak.locator("td.verdict").inner_text() == "fail"
        # Both medians, the p-value and the effect size, as the API has them.
        api = next(m for m in analysed["metrics"] if m["metric"] == "module-rss-growth(web)")
        assert leak.locator("td.canary-median").inner_text() == api["canary_median_text"]
        assert leak.locator("td.control-median").inner_text() == api["control_median_text"]
        assert leak.locator("td.p-value").inner_text() == f"{api['p_value']:.2g}"
        assert leak.locator("td.effect-size").inner_text() == "+1.00"
        restarts = wave.locator("tr.metric", has_text="module-restarts(web)")
        assert restarts.locator("td.verdict").inner_text() == "pass"
        assert seen.locator("#rollout-state").inner_text() == "rolled-back"
        _shot(seen, tmp_path, "rollout-analysis")
    finally:
        seen.context.close()


def test_the_overview_shows_forecasts_and_failure_groups_from_seeded_health(
    browser: Any, aiops: AiopsHub, tmp_path: Path
) -> None:
    hub = aiops.hub
    for device in aiops.looping:
        modules = {"web": {"name": "web", "version": "2.1.0", "state": "crash-loop"}}
        with device.client() as client:
            assert (
                client.post(
                    "/v1/report", json={"facts": FACTS, "modules": {"modules": modules}}
                ).status_code
                == 200
            )

    # node-17's disk: 100 MiB, 80 free, 1 MiB less every quarter second.
    def disk_forecast_and_loop_group(step: list[int]) -> bool:
        free = (80 - step[0]) * 2**20
        step[0] += 1
        health = {"disk_free_bytes": free, "disk_total_bytes": 100 * 2**20}
        with aiops.disk.client() as client:
            reported = client.post("/v1/report", json={"facts": FACTS, "health": health})
            assert reported.status_code == 200
        with hub.client() as client:
            found = client.get("/v1/insights").json()
        return any(f["device"] == "node-17" for f in found["forecasts"]) and any(
            g["kind"] == "crash-loop" for g in found["groups"]
        )

    counter = [0]
    wait_until(
        lambda: disk_forecast_and_loop_group(counter), 40, "a forecast and a group", interval_s=0.25
    )

    seen = _session_page(browser, hub)
    try:
        seen.goto(f"{hub.url}/console")
        forecast = seen.locator("tr.insight-forecast", has_text="node-17")
        assert forecast.count() == 1
        assert "disk-full-forecast" in forecast.inner_text()
        assert "disk full in ~" in forecast.inner_text()
        group = seen.locator("tr.insight-group", has_text="crash-loop")
        assert group.count() == 1
        assert "3 devices" in group.inner_text() and "web@2.1.0" in group.inner_text()
        # What the API answers, read through the same function.
        with hub.client() as client:
            api = client.get("/v1/insights").json()
        [api_group] = [g for g in api["groups"] if g["kind"] == "crash-loop"]
        assert api_group["summary"] in group.inner_text()
        [api_forecast] = [f for f in api["forecasts"] if f["device"] == "node-17"]
        assert api_forecast["kind"] in forecast.inner_text()
        _shot(seen, tmp_path, "overview-insights")
    finally:
        seen.context.close()


GUARD = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: guard}
    spec:
      selector: {matchLabels: {site: c}}
      selfHealing:
        quarantineAfter: {failures: 1, window: 10m}
    """)


def test_the_overview_shows_the_self_healing_actions_the_hub_took(
    browser: Any, aiops: AiopsHub, tmp_path: Path
) -> None:
    hub = aiops.hub
    (tmp_path / "guard.yaml").write_text(GUARD)
    hub.cli("apply", "-f", str(tmp_path / "guard.yaml"))
    looping = aiops.looping[0]
    modules = {"web": {"name": "web", "version": "2.1.0", "state": "crash-loop"}}
    with looping.client() as client:
        body = {"facts": FACTS, "modules": {"modules": modules}}
        assert client.post("/v1/report", json=body).status_code == 200

    def quarantined() -> dict[str, Any] | None:
        with hub.client() as client:
            actions = client.get("/v1/insights").json()["actions"]
        return next((a for a in actions if a["device"] == looping.name), None)

    action = wait_until(quarantined, 40, f"{looping.name} quarantined")
    assert action["action"] == "quarantine"

    seen = _session_page(browser, hub)
    try:
        seen.goto(f"{hub.url}/console")
        row = seen.locator("tr.insight-action", has_text=looping.name)
        assert row.count() == 1
        assert row.get_attribute("data-action") == "quarantine"
        # What the API answers, read through the same function.
        text = row.inner_text()
        assert action["detail"] in text and f"#{action['audit_seq']}" in text, text
        assert f"quarantined {looping.name}: " in text and "(deployment guard)" in text
        # The device's link goes to its page.
        row.get_by_role("link", name=looping.name).click()
        seen.wait_for_url(f"{hub.url}/console/devices/{action['device_id']}")
        seen.go_back()
        _shot(seen, tmp_path, "overview-self-healing")
    finally:
        seen.context.close()
