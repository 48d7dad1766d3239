"""Two hub processes on one PostgreSQL run one rollout: every wave starts once.

Both replicas tick their schedulers every second against the same database;
the advisory lock must make them take turns. Devices talk to both hubs.
"""

import textwrap
import time

import pytest

from tests.support.device import enroll_device
from tests.support.processes import start_hub, start_replica, wait_until
from tests.support.rollout_device import sync

MANIFEST = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector: {}
      config: {rate_hz: 7}
      rollout: {waves: [1, 2, 100%], bake: 1s, waveTimeout: 30s}
    """)


@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_two_hubs_share_one_rollout_without_double_steps(tmp_path, postgres_url):
    first = start_hub(tmp_path / "hub-a", db_url=postgres_url)
    second = start_replica(first, tmp_path / "hub-b")
    try:
        claim = first.create_claim(max_uses=5)
        devices = [enroll_device(first, claim, f"dev-{i}", tmp_path) for i in range(5)]
        # half the fleet talks to the other replica
        for device in devices[::2]:
            device.hub = second
        for device in devices:
            sync(device)
        path = tmp_path / "web.yaml"
        path.write_text(MANIFEST)
        second.cli("apply", "-f", str(path))

        def completed() -> bool:
            for device in devices:
                sync(device)
            with first.client() as client:
                return bool(client.get("/v1/rollouts/web").json()["state"] == "completed")

        wait_until(completed, 90, "rollout completed across two replicas", interval_s=0.3)
        time.sleep(2)  # both schedulers keep ticking: nothing may happen twice
        with second.client() as client:
            entries = client.get("/v1/audit").json()
            view = client.get("/v1/rollouts/web").json()
        starts = [e for e in entries if e["action"] == "rollout.wave-start"]
        assert len(starts) == 3, starts  # waves 1, 2, 3: each started exactly once
        assert view["succeeded"] == 5 and view["failed"] == 0
    finally:
        second.stop()
        first.stop()
