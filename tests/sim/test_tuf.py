"""The simulator's virtual nodes verify releases through TUF like agents: they
are built from NodeParts, pin the hub's root at enrollment and ask ngclient
before each download (so rehearsals and the rollout benchmark pay its cost)."""

import asyncio
import hashlib
import json
from pathlib import Path

from fogline.artifact import generate_release_key, load_private_key
from fogline.protocol import UpdateState
from fogline.sim import FleetConfig, OperatorClient, VirtualFleet, push_standin
from fogline.sim._standins import release_key_manifest
from fogline.sim._tuf import RehearsalTuf
from fogline.tuf import add_release, load_signer, module_role, new_module_role, sign_with, to_bytes
from tests.sim.helpers import deployment, fleet_claim, sim_devices
from tests.support.device import enroll_device
from tests.support.processes import HubProcess, wait_until_async
from tests.support.tuf import tuf_repository, tuf_targetinfo


def _sign_role(client: OperatorClient, key: Path, name: str, archive: Path) -> None:
    """The module's TUF role listing `archive`, signed by `key`, uploaded."""
    data = archive.read_bytes()
    role = new_module_role()
    version = archive.name.removeprefix(f"{name}-").removesuffix(".tar.zst")
    add_release(role, name, version, len(data), hashlib.sha256(data).hexdigest(), bump=False)
    sign_with(role, [load_signer(key)])
    client.call("PUT", f"/v1/tuf/roles/{module_role(name)}", content=to_bytes(role))


def test_virtual_nodes_install_what_tuf_signs_and_refuse_what_it_does_not(
    hub: HubProcess, tmp_path: Path
) -> None:
    module, prefix = "web", "tuf"
    repo = tuf_repository(hub, tmp_path / "tuf", module=module)
    key = repo.keys / "rel.key"
    client = OperatorClient(hub.url, hub.token, hub.ca)
    try:
        push_standin(client, tmp_path, load_private_key(key), module, "1.0.0")
        _sign_role(client, key, module, tmp_path / f"{module}-1.0.0.tar.zst")
        push_standin(client, tmp_path, load_private_key(key), module, "2.0.0")  # not in TUF
    finally:
        client.close()
    fleet = VirtualFleet(
        FleetConfig(
            hub_url=hub.url,
            ca_path=hub.ca,
            claim=fleet_claim(hub, 2, prefix),
            devices=2,
            data_dir=tmp_path / "fleet",
            prefix=prefix,
        )
    )
    manifest = tmp_path / "web.yaml"

    def installed(version: str) -> bool:
        return all(
            n.modules is not None
            and (r := n.modules.results.get(module)) is not None
            and r.version == version
            and r.state is UpdateState.DONE
            for n in fleet.nodes
        )

    def refused(version: str) -> bool:
        return all(
            n.modules is not None
            and (r := n.modules.results.get(module)) is not None
            and r.version == version
            and r.state is UpdateState.FAILED
            for n in fleet.nodes
        )

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(fleet.run(stop=stop))
        try:
            await wait_until_async(
                lambda: len(sim_devices(hub, prefix)) == 2, 30, "enrolled", 0.2, in_thread=True
            )
            for version, done in (("1.0.0", installed), ("2.0.0", refused)):
                manifest.write_text(
                    deployment(prefix, modules=f"[{{name: {module}, release: {module}@{version}}}]")
                )
                await asyncio.to_thread(hub.cli, "apply", "-f", str(manifest))
                await wait_until_async(lambda v=version, d=done: d(v), 60, version, 0.2)
        finally:
            stop.set()
        await running

    asyncio.run(scenario())
    for node in fleet.nodes:
        pinned = json.loads((node.data_dir / "identity" / "tuf-root.json").read_bytes())
        assert pinned["signed"]["version"] == 1
        assert node.modules is not None
        error = str(node.modules.results[module].error)
        assert "TUF refused web/2.0.0" in error and "not in the TUF metadata" in error
        assert node.modules.updater.installed(module).target.version == "1.0.0"


def test_the_rehearsal_hubs_tuf_repository_vouches_for_each_stand_in(
    hub: HubProcess, tmp_path: Path
) -> None:
    """What `rollout rehearse` gives its throwaway hub: a root of its own,
    the module delegated to the rehearsal key, each stand-in signed in."""
    key = generate_release_key()
    client = OperatorClient(hub.url, hub.token, hub.ca)
    try:
        client.call(
            "POST",
            "/v1/manifests/apply",
            json={"files": [{"name": "k.yaml", "text": release_key_manifest("r", key)}]},
        )
        tuf = RehearsalTuf(client, tmp_path / "tuf", key)
        tuf.init(["web"])
        for version in ("1.0.0", "2.0.0"):
            push_standin(client, tmp_path, key, "web", version)
            tuf.sign("web", version, tmp_path / f"web-{version}.tar.zst")
    finally:
        client.close()
    assert tuf.root_version == 1
    device = enroll_device(hub, hub.create_claim(), "reader", tmp_path)
    root = (tmp_path / "tuf" / "root.json").read_bytes()
    archive = (tmp_path / "web-2.0.0.tar.zst").read_bytes()
    found = tuf_targetinfo(device, root, tmp_path / "md", "web/2.0.0")
    assert found is not None and found.length == len(archive)
    assert found.hashes["sha256"] == hashlib.sha256(archive).hexdigest()
    assert tuf_targetinfo(device, root, tmp_path / "md", "web/1.0.0") is not None
    assert tuf_targetinfo(device, root, tmp_path / "md", "web/3.0.0") is None
