"""Canary analysis against a real hub: fake devices report health over mTLS,
the canaries of a leaking release grow their module's RSS, and the rollout
pauses in wave 1 naming the metric; a good release completes."""

import random
import textwrap
import time

import pytest

from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.processes import HubProcess, wait_until
from tests.support.rollout_device import desired_revision

MB = 1_000_000
SITES = ("a", "b")


def manifest(
    rate: int, *, min_samples: int = 4, inconclusive: str = "fail", on_failure: str = "rollback"
) -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          selector:
            matchExpressions: [{{key: site, operator: In, values: [a, b]}}]
          config: {{rate_hz: {rate}}}
          rollout:
            waves: [20%, 100%]
            bake: 3s
            waveTimeout: 60s
            onFailure: {on_failure}
            analysis:
              metrics:
                - {{metric: module-rss-growth, module: web, tolerance: 100MB/h}}
                - {{metric: module-restarts, module: web, tolerance: 10/h}}
              minSamples: {min_samples}
              inconclusive: {inconclusive}
        """)


class Fleet:
    """Twenty fake devices on two sites; `pump()` has each fetch its served
    revision and report it applied, with its module's health. Devices on
    `leaky` revisions grow the module's RSS by `leak_mb_s` a second.

    Each device keeps one connection: a new mTLS handshake per request made a
    pump of 20 devices slow enough under load that the canaries missed
    `minSamples` within the 3 s bake (an inconclusive wave, not the verdict
    under test)."""

    def __init__(self, hub: HubProcess, devices: list[TestDevice]) -> None:
        self.hub, self.devices = hub, devices
        self.clients = {device.name: device.client() for device in devices}
        self.rand = random.Random(5)
        self.base = {d.name: self.rand.uniform(40, 80) * MB for d in devices}
        self.since: dict[str, tuple[str | None, float]] = {}
        self.leaky: set[str] = set()
        self.leak_mb_s = 0.0

    def pump(self) -> None:
        for device in self.devices:
            client = self.clients[device.name]
            response = client.get("/v1/desired")
            assert response.status_code == 200, response.text
            revision = response.json()["revision"]
            before = self.since.get(device.name)
            if before is None or before[0] != revision:
                self.since[device.name] = (revision, time.monotonic())
            age_s = time.monotonic() - self.since[device.name][1]
            rss = self.base[device.name] + self.rand.gauss(0, 0.02 * MB)
            if revision in self.leaky:
                rss += self.leak_mb_s * MB * age_s
            web = {"state": "healthy", "restarts": 0, "rss_bytes": int(rss)}
            body = {
                "facts": FACTS,
                "labels": {},
                "applied": {"revision": revision, "ok": True, "error": None},
                "modules": {"modules": {"web": {"state": "healthy"}}},
                "health": {"cpu_percent": 5.0, "modules": {"web": web}},
            }
            response = client.post("/v1/report", json=body)
            assert response.status_code == 200, response.text

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture
def fleet(hub, tmp_path):
    devices = []
    for site in SITES:
        claim = hub.create_claim(labels=f"site={site}", max_uses=10)
        devices += [enroll_device(hub, claim, f"{site}-{i}", tmp_path) for i in range(10)]
    fleet = Fleet(hub, devices)
    try:
        fleet.pump()  # online, on the empty document
        yield fleet
    finally:  # a pump that fails must not leave 20 TLS connections to the garbage collector
        fleet.close()


def apply(hub, tmp_path, text):
    path = tmp_path / f"m{time.monotonic_ns()}.yaml"
    path.write_text(text)
    hub.cli("apply", "-f", str(path))


def view(hub):
    with hub.client() as client:
        response = client.get("/v1/rollouts/web")
    assert response.status_code == 200, response.text
    return response.json()


def run_until_stopped(fleet: Fleet) -> dict:
    state = {}

    def stopped() -> bool:
        fleet.pump()
        state.update(view(fleet.hub))
        return state["state"] in ("paused", "completed", "rolled-back")

    wait_until(stopped, 90, "the rollout stopped")
    return state


def test_a_leaking_release_is_stopped_in_wave_1_naming_the_metric(fleet, tmp_path):
    hub = fleet.hub
    before = {d.name: desired_revision(d) for d in fleet.devices}
    apply(hub, tmp_path, manifest(1))
    started = view(hub)
    # The first wave's devices are served the new revision at once.
    now = {d.name: desired_revision(d) for d in fleet.devices}
    canaries = {name for name, revision in now.items() if revision != before[name]}
    fleet.leaky |= {now[name] for name in canaries}
    fleet.leak_mb_s = 5.0
    # Stratified: the 20 % wave has devices of both sites.
    assert started["waves"][0]["devices"] == 4
    assert {name.split("-")[0] for name in canaries} == set(SITES)

    final = run_until_stopped(fleet)
    # A failed metric follows onFailure (rollback here) and names the metric.
    assert final["state"] == "rolled-back", final
    assert final["current_wave"] == 1
    assert "canary analysis fail: module-rss-growth(web)" in final["reason"]
    [wave] = final["analysis"]["waves"]
    leak, restarts = wave["metrics"]
    assert (leak["metric"], leak["outcome"], leak["canaries"]) == (
        "module-rss-growth(web)",
        "fail",
        4,
    )
    assert leak["controls"] == 16 and leak["p_value"] < 0.01 and leak["effect_size"] == 1.0
    assert leak["canary_median"] > 10_000 * MB  # MB per hour: 5 MB/s
    assert abs(leak["control_median"]) < 100 * MB
    assert restarts["outcome"] == "pass"

    with hub.client() as client:
        entries = client.get("/v1/audit").json()
    start = next(e for e in entries if e["action"] == "rollout.start")
    assert isinstance(start["detail"]["canary_seed"], int)
    assert start["detail"]["strata"] == 2
    analysed = next(e for e in entries if e["action"] == "rollout.analysis")
    assert analysed["detail"]["metrics"]["module-rss-growth(web)"] == "fail"

    shown = hub.cli("rollout", "status", "web", "-o", "table").stdout
    assert "canary analysis, wave 1: fail" in shown
    assert "module-rss-growth(web)" in shown and "100.0MB/h" in shown


def test_a_good_release_passes_the_analysis_and_completes(fleet, tmp_path):
    hub = fleet.hub
    apply(hub, tmp_path, manifest(2))
    final = run_until_stopped(fleet)
    assert final["state"] == "completed", final
    # Wave 1 was analysed against the devices still on the old revision;
    # the last wave has nobody left to compare with.
    [wave] = final["analysis"]["waves"]
    assert wave["wave"] == 1 and wave["outcome"] == "pass"
    assert [m["outcome"] for m in wave["metrics"]] == ["pass", "pass"]
    assert all(m["canaries"] == 4 and m["controls"] == 16 for m in wave["metrics"])


def test_an_inconclusive_wave_pauses_despite_rollback_and_resume_accepts_it(fleet, tmp_path):
    hub = fleet.hub
    # Wave 1 has 4 canaries: minSamples 5 cannot be met, so every metric is inconclusive.
    apply(hub, tmp_path, manifest(3, min_samples=5, inconclusive="pause"))
    paused = run_until_stopped(fleet)
    assert paused["state"] == "paused", paused  # not rolled back: `inconclusive: pause`
    assert "canary analysis inconclusive: module-rss-growth(web)" in paused["reason"]
    assert "minSamples is 5" in paused["reason"]
    with hub.client() as client:
        assert client.post("/v1/rollouts/web/resume").status_code == 200
    final = run_until_stopped(fleet)
    assert final["state"] == "completed", final
    assert len(final["analysis"]["waves"]) == 1  # the accepted wave was not analysed again
