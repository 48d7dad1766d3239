"""Stand-in releases: tiny signed modules with the name and version a manifest asks for.

A rehearsal does not need the real module, only something the real update
path can download, verify, install and health-check; its health is the
fleet's `health-fail` fault.
"""

import base64
import hashlib
import textwrap
from pathlib import Path
from typing import Final

import yaml

from fogline.artifact import (
    ReleaseKeyPair,
    build_release,
    public_key_base64,
    sign_release,
)
from fogline.manifest import release_key_document
from fogline.protocol import SIGNATURE_HEADER

from ._hub import OperatorClient

# Filler so a download is more than one chunk, as a real one would be.
_PAYLOAD_BYTES: Final = 64 * 1024


def write_standin(root: Path, name: str, version: str) -> Path:
    """A module directory for `name@version` whose health check is a short uptime."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "fogline-module.yaml").write_text(
        textwrap.dedent(f"""\
        name: {name}
        version: {version}
        command: [sim-module]
        health: {{uptime: 100ms, interval: 100ms, timeout: 1s}}
        startGrace: 200ms
        stopGrace: 1s
        restart: {{policy: always, backoff: {{initial: 200ms, max: 2s}}}}
        architectures: [any]
        """)
    )
    # Incompressible but reproducible bytes: the same stand-in, the same digest.
    seed = f"{name}@{version}".encode()
    payload = bytearray()
    counter = 0
    while len(payload) < _PAYLOAD_BYTES:
        payload += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    (root / "payload.bin").write_bytes(bytes(payload))
    return root


def release_key_manifest(name: str, key: ReleaseKeyPair) -> str:
    document = release_key_document(name, public_key_base64(key.public_key))
    return yaml.safe_dump(document, sort_keys=False)


def push_standin(
    client: OperatorClient, work_dir: Path, key: ReleaseKeyPair, name: str, version: str
) -> str:
    """Build, sign and push the stand-in for `name@version` (the archive is
    WORK_DIR/NAME-VERSION.tar.zst); returns its digest.

    Raises:
        RehearsalError: the hub refused the release.
        ModuleSpecError: `name` or `version` is not valid in a module file.
    """
    source = write_standin(work_dir / f"src-{name}-{version}", name, version)
    archive = work_dir / f"{name}-{version}.tar.zst"
    info = build_release(source, archive)
    envelope = sign_release(archive, key)
    client.call(
        "POST",
        "/v1/releases",
        content=archive.read_bytes(),
        headers={
            SIGNATURE_HEADER: base64.b64encode(envelope.to_json()).decode("ascii"),
            "content-type": "application/octet-stream",
        },
    )
    return info.digest
