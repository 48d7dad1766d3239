"""A hub that was down is no judge of what its devices did meanwhile."""

import textwrap
import time

from tests.support.device import enroll_device
from tests.support.processes import wait_until
from tests.support.rollout_device import sync

MANIFEST = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector: {}
      config: {rate_hz: 3}
      rollout: {bake: 0s, waveTimeout: 3s}
    """)


def state(hub):
    with hub.client() as client:
        return client.get("/v1/rollouts/web").json()


def test_a_hub_outage_longer_than_wave_timeout_does_not_fail_the_wave(hub, tmp_path):
    claim = hub.create_claim(max_uses=3)
    devices = [enroll_device(hub, claim, f"dev-{i}", tmp_path) for i in range(3)]
    for device in devices:
        sync(device)
    path = tmp_path / "web.yaml"
    path.write_text(MANIFEST)
    hub.cli("apply", "-f", str(path))
    hub.stop()  # before any device fetched the new document
    time.sleep(5)  # longer than waveTimeout (3 s) and the offline threshold (3.5 s)
    hub.start()
    # Devices reconnect over their retry backoff (here: up to 5 s), not in the
    # hub's first second; the scheduler ticks each second meanwhile.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and state(hub)["state"] == "running":
        time.sleep(0.2)

    def ended() -> bool:
        for device in devices:
            sync(device)
        return state(hub)["state"] != "running"

    wait_until(ended, 20, "the rollout ended")
    view = state(hub)
    assert view["state"] == "completed", view["reason"]
    assert view["succeeded"] == 3
