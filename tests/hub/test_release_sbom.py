"""Release SBOMs on a real hub: stored at push from the signed archive, shown
by `fogline release sbom`, and a tampered SBOM refused with its archive."""

import base64
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import zstandard

from fogline.artifact import (
    SBOM_FILE,
    load_private_key,
    sbom_path,
    sign_release,
    signature_path,
)
from tests.artifact._support import SMALL_SPEC, member, write_archive
from tests.support.agent_release import agent_release
from tests.support.processes import HubProcess, start_hub


@dataclass(frozen=True)
class Hub:
    process: HubProcess
    key: Path
    root: Path


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("sbom")
    process = start_hub(root / "hub", db_url=None)
    try:
        key_doc = process.cli("keys", "create", "ci", "--dir", str(root / "keys")).stdout
        process.cli("apply", "-f", "-", input_text=key_doc)
        yield Hub(process, root / "keys" / "ci.key", root)
    finally:
        process.stop()


def _module(root: Path, name: str, version: str) -> Path:
    src = root / f"{name}-{version}"
    dist = src / "site" / "urllib3-1.26.4.dist-info"
    dist.mkdir(parents=True)
    (src / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: urllib3\nVersion: 1.26.4\n")
    (src / "requirements.txt").write_text("idna==2.10\n")
    return src


def _build_and_sign(hub: Hub, name: str, version: str) -> Path:
    archive = hub.root / f"{name}-{version}.tar.zst"
    hub.process.cli("release", "build", str(_module(hub.root, name, version)), "-o", str(archive))
    hub.process.cli("release", "sign", str(archive), "--key", str(hub.key))
    return archive


def _with_member_replaced(archive: Path, name: str, data: bytes) -> bytes:
    """The archive's bytes with member `name`'s contents replaced (headers kept)."""
    raw = zstandard.ZstdDecompressor().stream_reader(archive.read_bytes()).read()
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(raw)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for info in src.getmembers():
            if info.name == name:
                info.size = len(data)
                dst.addfile(info, io.BytesIO(data))
            else:
                dst.addfile(info, src.extractfile(info) if info.isfile() else None)
    return zstandard.ZstdCompressor().compress(out.getvalue())


def test_a_pushed_release_shows_the_sbom_it_was_built_with(hub: Hub) -> None:
    archive = _build_and_sign(hub, "shown", "1.0.0")
    hub.process.cli("release", "push", str(archive))
    shown = hub.process.cli("release", "sbom", "shown@1.0.0", "--output", "json").stdout
    assert json.loads(shown) == json.loads(sbom_path(archive).read_bytes())
    table = hub.process.cli("release", "sbom", "shown@1.0.0", "--output", "table", "--files")
    assert "pkg:pypi/urllib3@1.26.4" in table.stdout
    assert "pkg:pypi/idna@2.10" in table.stdout
    assert "requirements.txt" in table.stdout  # --files: every file with its hash
    assert "2 packages, 3 files" in table.stderr


def test_an_sbom_changed_inside_the_archive_is_refused_at_push(hub: Hub) -> None:
    archive = _build_and_sign(hub, "tampered", "1.0.0")
    document = json.loads(sbom_path(archive).read_bytes())
    document["components"] = [c for c in document["components"] if "purl" not in c]
    forged = json.dumps(document).encode()  # hides the vulnerable packages
    archive.write_bytes(_with_member_replaced(archive, SBOM_FILE, forged))
    refused = hub.process.cli("release", "push", str(archive), check=False)
    assert refused.returncode == 1
    assert "changed after signing" in refused.stderr
    # Straight to the API with the old signature: the hub checks the digest too.
    envelope = signature_path(archive).read_bytes()
    with hub.process.client() as client:
        response = client.post(
            "/v1/releases",
            content=archive.read_bytes(),
            headers={"x-fogline-signature": base64.b64encode(envelope).decode()},
        )
    assert response.status_code == 422
    assert response.json()["error"] == "digest_mismatch"
    assert hub.process.cli("release", "sbom", "tampered@1.0.0", check=False).returncode == 1


def test_the_hub_stores_the_signed_sbom_not_the_copy_beside_the_archive(hub: Hub) -> None:
    archive = _build_and_sign(hub, "beside", "1.0.0")
    signed = sbom_path(archive).read_bytes()
    sbom_path(archive).write_text('{"bomFormat": "CycloneDX", "components": []}')
    hub.process.cli("release", "push", str(archive))
    shown = hub.process.cli("release", "sbom", "beside@1.0.0", "--output", "json").stdout
    assert json.loads(shown) == json.loads(signed)


def test_a_release_built_without_an_sbom_is_accepted_and_says_it_has_none(hub: Hub) -> None:
    archive = hub.root / "legacy.tar.zst"
    spec = SMALL_SPEC.replace(b"name: demo", b"name: legacy")
    write_archive(archive, [member("fogline-module.yaml", spec), member("a.txt", b"x")])
    sign_release(archive, load_private_key(hub.key))
    hub.process.cli("release", "push", str(archive))
    shown = hub.process.cli("release", "sbom", "legacy@1.0.0", check=False)
    assert shown.returncode == 1
    assert "legacy@1.0.0 has no SBOM" in shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1


def test_the_agent_release_sbom_lists_its_python_dependencies(hub: Hub) -> None:
    agent_release(hub.process, hub.root, hub.key, "7.7.7", "good")
    shown = hub.process.cli("release", "sbom", "fogline-agent@7.7.7", "--output", "json")
    purls = {c.get("purl") for c in json.loads(shown.stdout)["components"]}
    assert f"pkg:pypi/pydantic@{metadata.version('pydantic')}" in purls
    assert f"pkg:pypi/httpx@{metadata.version('httpx')}" in purls


def test_removing_a_release_removes_its_sbom(hub: Hub) -> None:
    archive = _build_and_sign(hub, "removed", "1.0.0")
    hub.process.cli("release", "push", str(archive))
    hub.process.cli("release", "rm", "removed@1.0.0")
    gone = hub.process.cli("release", "sbom", "removed@1.0.0", check=False)
    assert gone.returncode == 1 and "no release 'removed'" in gone.stderr
    # Pushed again (same bytes): the SBOM is stored anew, not left over.
    hub.process.cli("release", "push", str(archive))
    hub.process.cli("release", "sbom", "removed@1.0.0", "--output", "json")
