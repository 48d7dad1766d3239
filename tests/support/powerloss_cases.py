"""The components run over the power-loss recorder, each with its recovery check.

Each `record_*` sets a sandbox up (unrecorded: the starting state is taken
as durable), runs the component over `recording()`, marks what it
acknowledged, and returns the recorder and a check. A check gets one crash
state's file system and the acknowledgements made before the cut, runs the
component's real recovery on it, and returns what is wrong (empty: fine).

    updater:first-install   nothing -> v1
    updater:update          v1 -> v2
    updater:rollback        v1, v2 -> v3 that never becomes healthy
    updater:first-rollback  nothing -> v3: rolled back to nothing
    identity                enrollment, then a certificate renewal
    release-store           two archives streamed into the hub's store
    outbox                  records put and acknowledged (SQLite, WAL, synchronous=FULL)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.agent._identity import IdentityStore
from fogline.agent.outbox import Outbox
from fogline.agent.updater import (
    MemoryActivator,
    MemoryArtifactSource,
    UpdateLimits,
    Updater,
)
from fogline.artifact import ReleaseKeyPair, generate_release_key
from fogline.artifact._delta import make_delta
from fogline.hub.releases._artifacts import ArtifactStore
from fogline.security import load_private_key
from tests.agent.updater._support import (
    NAME,
    Release,
    make_release,
    no_sleep,
    serve,
    tree_digests,
    trusted,
)

from .certs import self_signed
from .powerloss import Exploration, Recorder, explore, recording

Check = Callable[[Path, frozenset[str]], list[str]]
SCENARIOS = (
    "updater:first-install",
    "updater:update",
    "updater:rollback",
    "updater:first-rollback",
    "updater:delta",
    "identity",
    "release-store",
    "outbox",
)


@dataclass(frozen=True)
class Releases:
    key: ReleaseKeyPair
    by_version: dict[str, Release]
    # (target digest, base digest) -> delta: served in the updater:delta scenario only
    deltas: dict[tuple[str, str], bytes]


def build_releases(work: Path) -> Releases:
    """v1, v2 and v3 (v3 is never healthy), small: a power cut's cost is per file."""
    key = generate_release_key()
    by_version = {
        v: make_release(work, v, key, payload_bytes=4_000, n_files=2)
        for v in ("1.0.0", "2.0.0", "3.0.0")
    }
    v1, v2 = by_version["1.0.0"], by_version["2.0.0"]
    delta = make_delta(v1.blob, v2.blob)
    assert delta is not None
    return Releases(key, by_version, {(v2.target.digest, v1.target.digest): delta})


def run_scenario(
    name: str, sandbox: Path, releases: Releases, *, full: bool, twice: bool = False
) -> Exploration:
    """Record scenario `name` in `sandbox` and check every crash state (with
    `twice`, also a second power cut during each recovery)."""
    recorder, check = _RECORDERS[name](sandbox / "run", releases, full)
    work = sandbox / "states"
    work.mkdir()
    # The outbox's recovery is SQLite's own, whose fsyncs the recorder does
    # not see: a second cut during it would be judged on a wrong model.
    twice = twice and name != "outbox"
    return explore(name, recorder, check, work, full=full, twice=twice)


# -- the updater ------------------------------------------------------------------

_UPDATES = {  # scenario -> (installed before, target, versions a recovered node may run)
    "updater:first-install": ((), "1.0.0", {None, "1.0.0"}),
    "updater:update": (("1.0.0",), "2.0.0", {"1.0.0", "2.0.0"}),
    "updater:rollback": (("1.0.0", "2.0.0"), "3.0.0", {"2.0.0"}),
    "updater:first-rollback": ((), "3.0.0", {None}),
    # v1 -> v2 rebuilt from v1's kept archive and a delta (agent/updater/_delta.py)
    "updater:delta": (("1.0.0",), "2.0.0", {"1.0.0", "2.0.0"}),
}


def _updater(
    root: Path,
    releases: Releases,
    activator: MemoryActivator,
    *,
    deltas: bool = False,
    sources: list[MemoryArtifactSource] | None = None,
) -> Updater:
    source = serve(*releases.by_version.values(), chunk_bytes=2048)
    if deltas:
        source.deltas = dict(releases.deltas)
    if sources is not None:
        sources.append(source)  # the caller sees what was fetched
    return Updater(
        root,
        source=source,
        activator=activator,
        trusted_keys=trusted(releases.key),
        limits=UpdateLimits(),
        machine="x86_64",
        sleep=no_sleep,
    )


def _record_update(scenario: str) -> Callable[[Path, Releases, bool], tuple[Recorder, Check]]:
    before, target, allowed = _UPDATES[scenario]
    final = {"3.0.0": "2.0.0" if before else None}.get(target, target)
    deltas = scenario == "updater:delta"

    def record(sandbox: Path, releases: Releases, writes: bool) -> tuple[Recorder, Check]:
        root = sandbox / "node"
        root.mkdir(parents=True)  # the agent's data dir, made by the installer

        async def setup() -> None:
            updater = _updater(root, releases, MemoryActivator())
            for version in before:
                assert (await updater.ensure(releases.by_version[version].target)).ok

        asyncio.run(setup())  # the recorder takes what is on disk now as durable
        activator = MemoryActivator(health={"3.0.0": False})
        with recording(sandbox, writes=writes) as recorder:
            sources: list[MemoryArtifactSource] = []

            async def agent() -> None:
                updater = _updater(root, releases, activator, deltas=deltas, sources=sources)
                await updater.recover()
                await updater.ensure(releases.by_version[target].target)

            asyncio.run(agent())
            recorder.mark("ensured")
        if deltas:  # it records the delta path, not a fallback to the full archive
            assert sources[0].delta_fetches and not sources[0].fetches

        def check(image: Path, acked: frozenset[str]) -> list[str]:
            return _check_node(
                image / "node", releases, allowed, final, "ensured" in acked, target, deltas=deltas
            )

        return recorder, check

    return record


def _check_node(
    root: Path,
    releases: Releases,
    allowed: set[str | None],
    final: str | None,
    acked: bool,
    target: str,
    *,
    deltas: bool = False,
) -> list[str]:
    problems: list[str] = []
    activator = MemoryActivator(health={"3.0.0": False})
    updater = _updater(root, releases, activator, deltas=deltas)

    async def restart() -> None:
        results = await updater.recover()
        problems.extend(
            f"recover: {r.error}" for r in results if r.error and r.error.startswith("recovering")
        )
        running = activator.running.get(NAME)
        if running not in allowed:
            problems.append(
                f"after recover runs {running}, expected one of {sorted(map(str, allowed))}"
            )
        if acked and running != final:
            problems.append(f"acknowledged {final}, but after recover runs {running}")
        problems.extend(_intact(root, releases, running, "after recover"))
        await updater.ensure(releases.by_version[target].target)
        running = activator.running.get(NAME)
        if running != final:
            problems.append(f"after ensure runs {running}, expected {final}")
        problems.extend(_intact(root, releases, running, "after ensure"))
        failure = updater.failure(NAME)
        if target == "3.0.0" and (failure is None or failure.version != target):
            problems.append(f"after ensure the failure of {target} is not recorded: {failure}")

    asyncio.run(restart())
    return problems


def _intact(root: Path, releases: Releases, running: str | None, when: str) -> list[str]:
    """The running version is a whole install, and `current` names it."""
    if running is None:
        return []
    release = releases.by_version[running]
    module_dir = root / "modules" / NAME
    try:
        current = os.readlink(module_dir / "current")
    except OSError:
        return [f"{when}: {running} runs but there is no current link"]
    if current != release.target.install_name:
        return [f"{when}: {running} runs but current -> {current}"]
    held = tree_digests(module_dir / current)
    if held != release.files:
        return [f"{when}: the install of {running} is not whole: {sorted(held)}"]
    return []


# -- the identity store -------------------------------------------------------------


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, csr_pem: str) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    csr = x509.load_pem_x509_csr(csr_pem.encode())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM).decode()


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, str]:
    from cryptography.hazmat.primitives.serialization import Encoding

    key, cert = self_signed("power-loss CA", dt.timedelta(days=365), ca=True)
    return key, cert, cert.public_bytes(Encoding.PEM).decode()


def _record_identity(sandbox: Path, _releases: Releases, writes: bool) -> tuple[Recorder, Check]:
    data = sandbox / "data"
    data.mkdir(parents=True)  # the agent's data dir, made by the installer
    ca_key, ca, ca_pem = _ca()
    with recording(sandbox, writes=writes) as recorder:
        store = IdentityStore(data)
        store.secure()
        first = _issue(ca_key, ca, store.new_csr("node-1"))
        store.save("dev-1", "node-1", first, ca_pem)
        recorder.mark("enrolled")
        renewed = _issue(ca_key, ca, store.renewal_csr("node-1"))
        store.finish_renewal(renewed, ca_pem)
        recorder.mark("renewed")

    def check(image: Path, acked: frozenset[str]) -> list[str]:
        store = IdentityStore(image / "data")
        store.secure()
        identity = store.load()
        if identity is None:
            return ["enrolled, but the node has no identity"] if "enrolled" in acked else []
        key = load_private_key(identity.key_path)
        cert = x509.load_pem_x509_certificate(identity.cert_path.read_bytes())
        x509.load_pem_x509_certificate(identity.ca_path.read_bytes())
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        if cert.public_key() != key.public_key():
            return ["key.pem and cert.pem do not belong together"]
        if "renewed" in acked and cert.public_bytes(_pem()).decode() != renewed:
            return ["renewal acknowledged, but the old certificate is back"]
        if store.load() != identity:
            return ["a second load sees another identity"]
        return []

    return recorder, check


def _pem() -> object:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


# -- the hub's release store ------------------------------------------------------


def _record_release_store(
    sandbox: Path, _releases: Releases, writes: bool
) -> tuple[Recorder, Check]:
    root = sandbox / "hub"
    root.mkdir(parents=True)  # the hub's data dir
    blobs = [hashlib.sha256(bytes([i])).digest() * (3000 + 500 * i) for i in range(2)]

    async def chunks(blob: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(blob), 16_384):
            yield blob[start : start + 16_384]

    with recording(sandbox, writes=writes) as recorder:
        store = ArtifactStore(root / "artifacts")
        for blob in blobs:
            staged = asyncio.run(store.receive(chunks(blob), max_bytes=1 << 20))
            store.commit(staged)
            recorder.mark(staged.digest)  # the hub commits the release row after this

    def check(image: Path, acked: frozenset[str]) -> list[str]:
        store = ArtifactStore(image / "hub" / "artifacts")
        store.sweep_partial_uploads(older_than_s=-60.0)  # as a restart an hour later
        problems = []
        for digest in acked:
            if not store.has(digest):
                problems.append(f"{digest[:19]} acknowledged, not in the store")
        stored = store.root / "sha256"
        for path in stored.rglob("*") if stored.is_dir() else []:
            if path.is_file():
                digest = "sha256:" + path.parent.name + path.name
                if "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                    problems.append(f"{path.name[:12]}: bytes do not match the digest")
        return problems

    return recorder, check


# -- the outbox -------------------------------------------------------------------


def _record_outbox(sandbox: Path, _releases: Releases, writes: bool) -> tuple[Recorder, Check]:
    data = sandbox / "data"
    data.mkdir(parents=True)
    db = data / "outbox" / "outbox.db"
    payloads: dict[int, bytes] = {}

    def sqlite_synced() -> None:
        # synchronous=FULL in WAL mode: when a commit returns, SQLite has
        # fsynced the WAL (and the directory, when it created it).
        for path in (db, db.with_name(db.name + "-wal"), db.parent):
            recorder.sync_path(path)

    with recording(sandbox, writes=writes) as recorder:
        outbox = Outbox.open(db, max_bytes=1 << 20)
        mode = outbox._require_open().execute("PRAGMA synchronous").fetchone()[0]
        assert mode == 2, f"the outbox runs with synchronous={mode}, not FULL (2)"
        sqlite_synced()
        for i in range(6):
            payload = f'{{"reading": {i}}}'.encode()
            seq = outbox.put("temps", payload, priority=5, ttl_s=3600.0)
            payloads[seq] = payload
            sqlite_synced()
            recorder.mark(f"put:{seq}")
            if i % 3 == 2:
                # The hub acknowledged seq - 1: from now on it may be gone.
                recorder.mark(f"acking:{seq - 1}")
                outbox.ack([seq - 1])
                sqlite_synced()
                recorder.mark(f"ack:{seq - 1}")
    outbox.close()

    def check(image: Path, acked: frozenset[str]) -> list[str]:
        put = {int(m.split(":")[1]) for m in acked if m.startswith("put:")}
        gone = {int(m.split(":")[1]) for m in acked if m.startswith("acking:")}
        problems = []
        with Outbox.open(image / "data" / "outbox" / "outbox.db", max_bytes=1 << 20) as reopened:
            held = {
                r.seq: r.payload for r in reopened.next_batch(max_records=100, max_bytes=1 << 20)
            }
            for seq in sorted(put - gone):
                if held.get(seq) != payloads[seq]:
                    problems.append(f"record {seq} was acknowledged to its producer and is lost")
            new = reopened.put("temps", b"{}", priority=5, ttl_s=60.0)
            if put and new <= max(put):
                problems.append(f"a new record got seq {new}, reusing an acknowledged one")
        return problems

    return recorder, check


_RECORDERS: dict[str, Callable[[Path, Releases, bool], tuple[Recorder, Check]]] = {
    "updater:first-install": _record_update("updater:first-install"),
    "updater:update": _record_update("updater:update"),
    "updater:rollback": _record_update("updater:rollback"),
    "updater:first-rollback": _record_update("updater:first-rollback"),
    "updater:delta": _record_update("updater:delta"),
    "identity": _record_identity,
    "release-store": _record_release_store,
    "outbox": _record_outbox,
}
