"""Hub memory stays bounded while many devices download a release slowly
(issue #18), and each download is still authorised.

A real hub process, a real signed release pushed with the CLI, enrolled
devices whose desired state names it, and 200 concurrent mTLS downloads
from slow readers (16 KiB receive buffer, paced): the clients and the
measurement are benchmarks/bench_downloads.py's. Measured with this test's
sizes (one hub process, a 2 MiB release, load 94-104): the hub before the
fix grew 140 MB over its idle baseline (about 700 KB per download), after it
18 MB (92 KB). The bound, 400 KB per download, fails the old hub and leaves
the new one a fourfold margin.
"""

from __future__ import annotations

import argparse
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks.bench_downloads import measure
from benchmarks.bench_rollout_scale import MODULE, VERSION, make_release
from tests.support.device import enroll_device
from tests.support.processes import start_hub

DOWNLOADS = 200
DEVICES = 10
MAX_GROWTH_PER_DOWNLOAD_KB = 400


@pytest.fixture(scope="module")
def download_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("downloads")
    hub = start_hub(
        root / "hub",
        extra_args=["--max-connections-per-address", "0", "--idle-timeout", "300"],
    )
    try:
        digest = make_release(hub, root, 2)
        deployment = textwrap.dedent(f"""\
            apiVersion: fogline.dev/v1
            kind: Deployment
            metadata: {{name: downloads}}
            spec:
              selector: {{matchLabels: {{wave: one}}}}
              modules: [{{name: {MODULE}, release: {MODULE}@{VERSION}}}]
            """)
        (root / "deployment.yaml").write_text(deployment)
        hub.cli("apply", "-f", str(root / "deployment.yaml"))
        claim = hub.create_claim(labels="wave=one", max_uses=DEVICES)
        devices = [enroll_device(hub, claim, f"dl-{i}", root) for i in range(DEVICES)]
        yield hub, root, digest, devices
    finally:
        hub.stop()


def test_many_slow_downloads_hold_bounded_hub_memory(download_hub):
    hub, root, digest, devices = download_hub
    creds = [(str(d.cert_path), str(d.key_path)) for d in devices]
    args = argparse.Namespace(procs=1, slow=1.0, slow_kib_s=512, timeout=100)
    with ThreadPoolExecutor(1) as pool:
        result = measure(hub, pool, creds, digest, root, DOWNLOADS, args)
    assert (result.connected, result.ok, result.bad_digest) == (DOWNLOADS, DOWNLOADS, 0), result
    assert not result.errors, result.errors
    growth_kb = (result.peak_mb - result.baseline_mb) * 1024
    assert growth_kb < DOWNLOADS * MAX_GROWTH_PER_DOWNLOAD_KB, (
        f"hub RSS grew {growth_kb / 1024:.0f} MB over the idle baseline "
        f"({result.baseline_mb:.0f} MB) for {DOWNLOADS} slow downloads"
    )


def test_each_download_is_still_authorised(download_hub, tmp_path):
    hub, _, digest, devices = download_hub
    # A device whose desired state does not name the release: as if absent.
    outsider = enroll_device(hub, hub.create_claim(labels="wave=two"), "dl-outsider", tmp_path)
    with outsider.client() as client:
        assert client.get(f"/v1/artifacts/{digest}").status_code == 404
    with devices[0].client() as client:
        tail = client.get(f"/v1/artifacts/{digest}", headers={"range": "bytes=1000-"})
        assert tail.status_code == 206
        whole = client.get(f"/v1/artifacts/{digest}")
        assert whole.status_code == 200 and whole.content[1000:] == tail.content
    hub.cli("devices", "revoke", "dl-1")
    with devices[1].client() as client:
        assert client.get(f"/v1/artifacts/{digest}").status_code == 403
