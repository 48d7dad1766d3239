"""TUF on the hub and the CLI: the offline ceremony, uploads checked against
what the hub trusts, snapshot and timestamp signed online, metadata served to
devices over mTLS and read by python-tuf's ngclient."""

import hashlib
import json
import shutil
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner

from fogline.tuf import OfflineRepo
from tests.support.device import enroll_body, enroll_device
from tests.support.processes import HubProcess, start_hub, tls, wait_until
from tests.support.tuf import delegate, release_key, tuf_release, tuf_repository, tuf_targetinfo


def _metadata(hub: HubProcess, name: str) -> dict:
    with hub.client() as client:
        response = client.get(f"/v1/tuf/metadata/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _put(hub: HubProcess, role: str, body: bytes) -> httpx.Response:
    with hub.client() as client:
        return client.put(f"/v1/tuf/roles/{role}", content=body)


def test_ceremony_then_release_lets_an_enrolled_device_find_exactly_the_signed_bytes(
    hub: HubProcess, tmp_path: Path
) -> None:
    repo = tuf_repository(hub, tmp_path / "tuf")
    archive = tuf_release(hub, tmp_path, [repo.keys / "rel.key"], "1.0.0", 8080)

    device = enroll_device(hub, hub.create_claim(), "dev-1", tmp_path)
    root = (repo.offline / "root.json").read_bytes()
    info = tuf_targetinfo(device, root, tmp_path / "ngclient", "web/1.0.0")
    assert info is not None
    data = archive.read_bytes()
    assert info.length == len(data)
    assert info.hashes == {"sha256": hashlib.sha256(data).hexdigest()}
    assert tuf_targetinfo(device, root, tmp_path / "ngclient", "web/9.9.9") is None

    # The hub signed snapshot and timestamp over what was uploaded.
    snapshot = _metadata(hub, "snapshot.json")["signed"]
    assert set(snapshot["meta"]) == {"targets.json", "module-web.json"}
    timestamp = _metadata(hub, "timestamp.json")["signed"]
    assert timestamp["meta"]["snapshot.json"]["version"] == snapshot["version"]

    # Neither a token nor a certificate: refused; an unknown file: 404.
    with httpx.Client(base_url=hub.url, verify=tls(hub.ca)) as anonymous:
        assert anonymous.get("/v1/tuf/metadata/timestamp.json").status_code == 401
    with device.client() as client:
        assert client.get("/v1/tuf/metadata/7.targets.json").status_code == 404
        assert client.get("/v1/tuf/metadata/..%2Fhub.db").status_code == 404
        assert (
            client.get("/v1/tuf/metadata/1.root.json").content
            == (repo.offline / "1.root.json").read_bytes()
        )


def test_enrollment_answer_carries_the_hub_root_once_tuf_is_initialised(
    hub: HubProcess, tmp_path: Path
) -> None:
    def enroll(name: str) -> dict:
        key = ec.generate_private_key(ec.SECP256R1())
        response = httpx.post(
            f"{hub.url}/v1/enroll",
            json=enroll_body(claim, name, key),
            verify=tls(hub.ca),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    claim = hub.create_claim()
    assert "tuf_root" not in enroll("before")  # older agents enroll as before
    repo = tuf_repository(hub, tmp_path / "tuf")
    assert enroll("after")["tuf_root"].encode() == (repo.offline / "root.json").read_bytes()


def test_uploads_are_checked_against_what_the_hub_trusts(hub: HubProcess, tmp_path: Path) -> None:
    repo = tuf_repository(hub, tmp_path / "tuf")
    stranger = release_key(hub, repo.keys, "stranger")
    # A release signed by a key the module is not delegated to.
    archive = tuf_release(hub, tmp_path, [stranger], "1.0.0", 8080, push=False)
    role_file = archive.with_name(archive.name + ".tuf.json")
    refused = _put(hub, "module-web", role_file.read_bytes())
    assert refused.status_code == 422, refused.text
    assert "not signed by a threshold" in refused.json()["message"]
    assert refused.json()["details"][0]["field"] == "metadata"

    # A role nobody delegated; snapshot (the hub's own); junk; a wrong role name.
    assert "does not delegate" in _put(hub, "module-other", role_file.read_bytes()).text
    assert _put(hub, "snapshot", b"{}").status_code == 422
    assert "not valid TUF metadata" in _put(hub, "module-web", b"{nope").json()["message"]
    assert _put(hub, "Root", b"{}").json()["details"][0]["field"] == "role"

    # The delegated key: accepted; the same bytes again: unchanged; older: 409.
    good = tuf_release(hub, tmp_path, [repo.keys / "rel.key"], "1.0.1", 8080)
    good_role = good.with_name(good.name + ".tuf.json").read_bytes()
    again = _put(hub, "module-web", good_role)
    assert again.status_code == 200 and again.json()["created"] is False
    tuf_release(hub, tmp_path, [repo.keys / "rel.key"], "1.0.2", 8080)
    stale = _put(hub, "module-web", good_role)
    assert stale.status_code == 409 and "not above" in stale.json()["message"]

    # A well-signed next root whose snapshot/timestamp key is not this hub's.
    copy = tmp_path / "offline-copy"
    shutil.copytree(repo.offline, copy)
    OfflineRepo(copy).rotate_root(
        keys=None, threshold=None, online_key=CryptoSigner.generate_ed25519().public_key
    )
    wrong = _put(hub, "root", (copy / "2.root.json").read_bytes())
    assert wrong.status_code == 422 and "online key" in wrong.json()["message"]


def test_a_release_key_below_its_threshold_cannot_push_the_role_until_cosigned(
    hub: HubProcess, tmp_path: Path
) -> None:
    repo = tuf_repository(hub, tmp_path / "tuf", release_keys=("alice", "bob"), threshold=2)
    alice, bob = repo.keys / "alice.key", repo.keys / "bob.key"
    archive = tuf_release(hub, tmp_path, [alice], "1.0.0", 8080, push=False)
    push = hub.cli("release", "push", str(archive), check=False)
    assert push.returncode == 1
    assert "not signed by a threshold" in push.stderr and "Traceback" not in push.stderr
    hub.cli("release", "sign", str(archive), "--key", str(bob), "--tuf")  # co-signs the file
    hub.cli("release", "push", str(archive))
    role = _metadata(hub, "module-web.json")
    assert len(role["signatures"]) == 2 and "web/1.0.0" in role["signed"]["targets"]


def test_root_rotation_is_followed_from_the_root_pinned_before_it(
    hub: HubProcess, tmp_path: Path
) -> None:
    repo = tuf_repository(hub, tmp_path / "tuf")
    tuf_release(hub, tmp_path, [repo.keys / "rel.key"], "1.0.0", 8080)
    pinned = (repo.offline / "root.json").read_bytes()
    hub.cli("tuf", "rotate-root", "--dir", str(repo.offline), "--keys", "2", "--threshold", "2")
    hub.cli("tuf", "push", "--dir", str(repo.offline))
    assert sorted(p.name for p in (repo.offline / "retired").iterdir()) == [
        "root-key-1.pem",
        "root-key-2.pem",
        "root-key-3.pem",
    ]
    assert oct((repo.offline / "root-key-4.pem").stat().st_mode & 0o777) == "0o600"

    device = enroll_device(hub, hub.create_claim(), "dev-1", tmp_path)
    info = tuf_targetinfo(device, pinned, tmp_path / "ngclient", "web/1.0.0")
    assert info is not None
    cached = json.loads((tmp_path / "ngclient" / "root.json").read_bytes())
    assert cached["signed"]["version"] == 2

    # A root signed only by the new keys, skipping the old threshold: refused.
    forged = json.loads((repo.offline / "2.root.json").read_bytes())
    forged["signed"]["version"] = 3
    body = json.dumps(forged).encode()
    refused = _put(hub, "root", body)
    assert refused.status_code == 422, refused.text


def test_timestamp_is_renewed_by_the_hub_at_half_its_life(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub", extra_args=["--tuf-timestamp-expiry", "4s"])
    try:
        tuf_repository(hub, tmp_path / "tuf")
        first = _metadata(hub, "timestamp.json")["signed"]
        renewed = wait_until(
            lambda: (
                (t := _metadata(hub, "timestamp.json")["signed"])["version"] > first["version"]
                and t
            ),
            10,
            "a renewed timestamp",
            interval_s=0.5,
        )
        assert renewed["expires"] > first["expires"]
        assert renewed["meta"] == first["meta"]
    finally:
        hub.stop()


def test_tuf_cli_errors_are_one_line(hub: HubProcess, tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    bad = hub.cli(
        "tuf", "init", "--dir", str(offline), "--keys", "2", "--threshold", "3",
        "--online-key", str(tmp_path / "missing.json"), check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    online = tmp_path / "online.json"
    online.write_text(hub.cli("tuf", "online-key").stdout)
    hub.cli("tuf", "init", "--dir", str(offline), "--online-key", str(online))
    again = hub.cli("tuf", "init", "--dir", str(offline), "--online-key", str(online), check=False)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    with pytest.raises(AssertionError):
        delegate(hub, offline, "web", [tmp_path / "nope.pub"])
