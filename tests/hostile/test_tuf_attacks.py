"""TUF's attacks against a real hub and a real agent (issue #16): arbitrary
software, a compromised online key, a release key below threshold,
mix-and-match, rollback, freeze, and recovery by key rotation.

The attacker here holds what a compromised hub holds: its database and its
online key (DATA/tuf-online-key.pem), so it can serve any metadata and sign
snapshot and timestamp, but has neither the offline root keys nor a
threshold of a module's release keys. Each attack is refused by the node
with a clear error in its report, and the module keeps running the release
it had.
"""

import datetime as dt
import hashlib
import sqlite3
from pathlib import Path

import httpx
import pytest
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp

from fogline.tuf import add_release, load_signer, parse, to_bytes
from tests.support.modules import deployment
from tests.support.processes import AgentProcess, HubProcess, free_port, start_hub, wait_until
from tests.support.tuf import delegate, release_key, tuf_release, tuf_repository


def _served(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


def _update(hub: HubProcess, name: str) -> dict:
    modules = hub.device(name).get("reported", {}).get("modules") or {}
    return dict((modules.get("updates") or {}).get("web") or {})


class _Compromised:
    """Writes metadata straight into the hub's database, as its thief can."""

    def __init__(self, hub: HubProcess) -> None:
        self.db = hub.data_dir / "hub.db"
        self.signer = load_signer(hub.data_dir / "tuf-online-key.pem")

    def _latest(self, role: str) -> tuple[int, bytes]:
        with sqlite3.connect(self.db) as db:
            version, body = db.execute(
                "SELECT version, body FROM tuf_metadata WHERE role = ? "
                "ORDER BY version DESC LIMIT 1",
                (role,),
            ).fetchone()
        return int(version), bytes(body)

    def _insert(self, md: Metadata, role: str | None = None) -> None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        expires = md.signed.expires.astimezone(dt.UTC).replace(tzinfo=None)
        with sqlite3.connect(self.db) as db:
            db.execute(
                "INSERT INTO tuf_metadata (role, version, body, expires, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (role or md.signed.type, md.signed.version, to_bytes(md), expires, now),
            )

    def timestamp_for(self, snapshot_version: int) -> None:
        """A fresh timestamp, signed with the online key, naming `snapshot_version`."""
        version, _ = self._latest("timestamp")
        md = Metadata(
            Timestamp(
                version=version + 1,
                # A full day: the hub's own renewal (at half life) leaves it be.
                expires=dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1),
                snapshot_meta=MetaFile(version=snapshot_version),
            )
        )
        md.sign(self.signer)
        self._insert(md)

    def ship(self, role: Metadata, *, signers: list = ()) -> None:
        """Serve `role` as module-web's next version, signed by `signers` (and,
        for snapshot and timestamp, the online key)."""
        version, _ = self._latest("module-web")
        role.signed.version = version + 1
        role.signatures.clear()
        for signer in signers:
            role.sign(signer, append=True)
        self._insert(role, "module-web")
        snap_version, snap_body = self._latest("snapshot")
        snapshot = parse("snapshot", snap_body, Snapshot)
        snapshot.signed.meta["module-web.json"] = MetaFile(version=version + 1)
        snapshot.signed.version = snap_version + 1
        snapshot.signatures.clear()
        snapshot.sign(self.signer)
        self._insert(snapshot)
        self.timestamp_for(snap_version + 1)

    def mix_and_match(self) -> None:
        """A fresh snapshot (and timestamp) whose entry for module-web names
        the version served but the hash of other bytes: metadata that does
        not match the targets role the hub serves."""
        web_version, web_body = self._latest("module-web")
        snap_version, snap_body = self._latest("snapshot")
        snapshot = parse("snapshot", snap_body, Snapshot)
        snapshot.signed.meta["module-web.json"] = MetaFile(
            version=web_version,
            length=len(web_body),
            hashes={"sha256": hashlib.sha256(b"another module-web").hexdigest()},
        )
        snapshot.signed.version = snap_version + 1
        snapshot.signatures.clear()
        snapshot.sign(self.signer)
        self._insert(snapshot)
        self.timestamp_for(snap_version + 1)

    def module_role_with(self, archive: Path, version: str) -> Metadata:
        """module-web as the hub has it, plus `version` with `archive`'s true bytes."""
        _, body = self._latest("module-web")
        role = parse("module-web", body, Targets)
        data = archive.read_bytes()
        add_release(role, "web", version, len(data), hashlib.sha256(data).hexdigest())
        return role


def _deploy(hub: HubProcess, path: Path, version: str, attempt: int) -> None:
    # A config change per attempt: a new desired revision, so the node tries again.
    path.write_text(deployment(version, config=f"{{attempt: {attempt}}}"))
    hub.cli("apply", "-f", str(path))


def _refused(hub: HubProcess, attempt: int, words: str) -> str:
    def seen() -> str | None:
        update = _update(hub, "node-1")
        error = update.get("error") or ""
        return error if update.get("version") == "2.0.0" and words in error else None

    return str(wait_until(seen, 60, f"attempt {attempt} refused with {words!r}"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_compromised_hub_cannot_ship_rollback_or_forge_and_rotation_recovers(
    hub: HubProcess, tmp_path: Path
) -> None:
    repo = tuf_repository(hub, tmp_path / "tuf", release_keys=("alice", "bob"), threshold=2)
    alice, bob = repo.keys / "alice.key", repo.keys / "bob.key"
    port = free_port()
    tuf_release(hub, tmp_path, [alice, bob], "1.0.0", port)
    # v2 is pushed as an archive (the legacy .sig by alice, a trusted
    # ReleaseKey) but no threshold of release keys ever signed its TUF target.
    v2 = tuf_release(hub, tmp_path, [alice], "2.0.0", port, tuf=False)
    agent = AgentProcess(tmp_path / "node", hub, "node-1", hub.create_claim())
    agent.start()
    manifest = tmp_path / "web.yaml"
    thief = _Compromised(hub)
    try:
        agent.wait_enrolled()
        _deploy(hub, manifest, "1.0.0", 0)
        wait_until(lambda: (s := _served(port)) and s["version"] == "1.0.0", 90, "v1 running")

        # Arbitrary software: v2 is nowhere in the metadata.
        _deploy(hub, manifest, "2.0.0", 1)
        _refused(hub, 1, "not in the TUF metadata")

        # A compromised online key: module-web listing v2, signed by nobody
        # but the hub's own key, with a fresh snapshot and timestamp.
        forged = thief.module_role_with(v2, "2.0.0")
        thief.ship(forged, signers=[thief.signer])
        _deploy(hub, manifest, "2.0.0", 2)
        _refused(hub, 2, "UnsignedMetadataError")

        # A compromised release key below the threshold: alice alone signs v2.
        forged = thief.module_role_with(v2, "2.0.0")
        thief.ship(forged, signers=[load_signer(alice)])
        _deploy(hub, manifest, "2.0.0", 3)
        error = _refused(hub, 3, "UnsignedMetadataError")
        assert "module-web" in error

        # Mix-and-match: a snapshot, signed with the online key, that does
        # not match the module-web role the hub serves.
        thief.mix_and_match()
        _deploy(hub, manifest, "2.0.0", 4)
        error = _refused(hub, 4, "LengthOrHashMismatchError")
        assert error.startswith("TUF refused web/2.0.0")
        assert hashlib.sha256(b"another module-web").hexdigest() in error  # the snapshot's claim

        # Rollback: a fresh timestamp naming the first snapshot the node saw
        # long ago, older than the one it trusts now.
        thief.timestamp_for(1)
        _deploy(hub, manifest, "2.0.0", 5)
        _refused(hub, 5, "BadVersionNumberError")

        # Through all of it the node stayed on v1, and fetched nothing of v2.
        assert _served(port)["version"] == "1.0.0"
        assert not any((tmp_path / "node" / "updater" / "downloads").iterdir())

        # Recovery by key rotation: the offline keys delegate web to bob and a
        # new key (alice is out); a threshold of them signs v2, and it installs.
        carol = release_key(hub, repo.keys, "carol")
        delegate(hub, repo.offline, "web", [repo.keys / "bob.pub", repo.keys / "carol.pub"], 2)
        for key in (bob, carol):
            hub.cli("release", "sign", str(v2), "--key", str(key), "--tuf")
        hub.cli("release", "push", str(v2))
        _deploy(hub, manifest, "2.0.0", 6)
        wait_until(lambda: (s := _served(port)) and s["version"] == "2.0.0", 90, "v2 running")
    finally:
        agent.stop()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_stale_hub_serving_an_expired_timestamp_freezes_nobody(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub", extra_args=["--tuf-timestamp-expiry", "3s", "--no-tuf-renew"])
    agent = AgentProcess(tmp_path / "node", hub, "node-1", hub.create_claim())
    try:
        repo = tuf_repository(hub, tmp_path / "tuf")
        port = free_port()
        tuf_release(hub, tmp_path, [repo.keys / "rel.key"], "1.0.0", port)
        with hub.client() as client:
            expires = dt.datetime.fromisoformat(
                client.get("/v1/tuf/metadata/timestamp.json").json()["signed"]["expires"]
            )
        # The attack is time passing while the hub serves what it last signed.
        wait_until(lambda: dt.datetime.now(dt.UTC) > expires, 10, "the timestamp to expire")
        agent.start()
        agent.wait_enrolled()
        manifest = tmp_path / "web.yaml"
        manifest.write_text(deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        refused = wait_until(
            lambda: (
                "ExpiredMetadataError" in (_update(hub, "node-1").get("error") or "")
                and _update(hub, "node-1")
            ),
            60,
            "the expired timestamp refused",
        )
        assert refused["state"] == "failed"
        assert "timestamp" in refused["error"]
        assert _served(port) is None  # nothing installed from a frozen view
    finally:
        agent.stop()
        hub.stop()
