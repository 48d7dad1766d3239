"""Helpers for virtual fleets against a real hub (imported by the tests here)."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

from fogline.artifact import generate_release_key, public_key_base64
from fogline.sim import OperatorClient, push_standin
from tests.support.processes import HubProcess, list_devices


def push_release(hub: HubProcess, work: Path, name: str, versions: list[str]) -> None:
    """Trust a throwaway key on the hub and push stand-ins for `versions` of `name`."""
    key = generate_release_key()
    (work / "key.yaml").write_text(
        textwrap.dedent(f"""\
            apiVersion: fogline.dev/v1
            kind: ReleaseKey
            metadata: {{name: sim-test-{name}}}
            spec: {{publicKey: "{public_key_base64(key.public_key)}"}}
            """)
    )
    client = OperatorClient(hub.url, hub.token, hub.ca)
    try:
        apply_now(hub, (work / "key.yaml").read_text())
        for version in versions:
            push_standin(client, work, key, name, version)
    finally:
        client.close()


def deployment(name: str, *, modules: str = "", config: str = "{}", rollout: str = "") -> str:
    """A Deployment `name` selecting the virtual nodes whose claim labels them
    `test=<name>` (see `fleet_claim`)."""
    text = textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          selector: {{matchLabels: {{test: {name}, sim: "true"}}}}
          config: {config}
        """)
    if modules:
        text += f"  modules: {modules}\n"
    if rollout:
        text += f"  rollout: {rollout}\n"
    return text


def apply_now(hub: HubProcess, text: str) -> None:
    """Apply a manifest through the API (a CLI process per apply would cost a second)."""
    client = OperatorClient(hub.url, hub.token, hub.ca)
    try:
        body = {"files": [{"name": "test.yaml", "text": text}], "prune": False}
        client.call("POST", "/v1/manifests/apply", json=body)
    finally:
        client.close()


async def apply(hub: HubProcess, text: str) -> None:
    await asyncio.to_thread(apply_now, hub, text)


def create_claim(hub: HubProcess, uses: int, labels: dict[str, str] | None = None) -> str:
    """A claim for `uses` nodes; its labels are what deployments select them on."""
    client = OperatorClient(hub.url, hub.token, hub.ca)
    try:
        body = {"labels": labels or {}, "max_uses": uses, "expires_in_s": 3600}
        return str(client.call("POST", "/v1/claims", json=body)["token"])
    finally:
        client.close()


def fleet_claim(hub: HubProcess, uses: int, prefix: str) -> str:
    """A claim labelling its nodes as `deployment(prefix)` selects them."""
    return create_claim(hub, uses, {"test": prefix, "sim": "true"})


def sim_devices(hub: HubProcess, prefix: str) -> list[dict[str, Any]]:
    with hub.client() as client:
        rows = list_devices(client)
    return [row for row in rows if row["name"].startswith(f"sim-{prefix}-")]
