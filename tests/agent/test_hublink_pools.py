"""A link that follows renewals closes the connections of the certificate it
replaced as soon as nothing runs on them, against a real hub.

Before, the replaced pool stayed open until the next renewal: one kept-alive
socket per link and renewal, which a 1,000-node virtual fleet saw as
thousands of descriptors and unclosed-socket warnings (tests/sim/test_renewal.py).
"""

import asyncio
import os
from pathlib import Path

from fogline.agent import HubLink, HubTls
from fogline.agent._identity import Identity
from tests.support.device import FACTS, enroll_device
from tests.support.processes import HubProcess


def _connections_to(port: int) -> int:
    """This process's established TCP connections to 127.0.0.1:`port`."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open("/proc/self/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
                count += 1
    return count


def test_a_renewal_closes_the_replaced_connections_once_idle(
    hub: HubProcess, tmp_path: Path
) -> None:
    device = enroll_device(hub, hub.create_claim(), "pools-1", tmp_path)
    identity = Identity(device.device_id, "pools-1", device.key_path, device.cert_path, hub.ca)

    async def scenario() -> None:
        tls = HubTls(identity)
        link = HubLink(hub.url, hub.ca, tls=tls)
        try:
            report = {"facts": FACTS, "labels": {}}
            assert (await link.http.post("/v1/report", json=report)).status_code == 200
            assert _connections_to(hub.port) == 1  # kept alive
            # A long-poll in flight on the old certificate's pool...
            etag = (await link.http.get("/v1/desired")).headers["etag"]
            poll = asyncio.create_task(
                link.http.get("/v1/desired", params={"wait": 2}, headers={"if-none-match": etag})
            )
            await asyncio.sleep(0.5)
            tls.reload()  # ...when the node renews
            assert (await link.http.post("/v1/report", json=report)).status_code == 200
            # ...finishes instead of failing, and its pool is closed after it.
            assert _connections_to(hub.port) == 2
            assert (await poll).status_code == 304  # nothing changed
            assert _connections_to(hub.port) == 1
            for _ in range(3):  # renewal after renewal: never more than one pool
                tls.reload()
                assert (await link.http.post("/v1/report", json=report)).status_code == 200
                assert _connections_to(hub.port) == 1
        finally:
            await link.aclose()
        assert _connections_to(hub.port) == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))
