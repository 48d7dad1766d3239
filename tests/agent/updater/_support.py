"""Releases built for real in a temp dir, and an Updater wired to fakes."""

import asyncio
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fogline.agent.updater import (
    MemoryActivator as MemoryActivator,
)
from fogline.agent.updater import (
    MemoryArtifactSource,
    ReleaseTarget,
    State,
    TargetTrust,
    UpdateLimits,
    UpdateProgress,
    Updater,
)
from fogline.artifact import (
    SBOM_FILE,
    ModuleSpec,
    ReleaseKeyPair,
    build_release,
    sign_release,
)

NAME = "demo"


def module_yaml(name: str, version: str, *, arch: str = "any") -> str:
    return (
        f"name: {name}\nversion: {version}\ncommand: [python3, app.py]\n"
        f"health: {{uptime: 1s}}\nstartGrace: 0s\narchitectures: [{arch}]\n"
    )


@dataclass(frozen=True)
class Release:
    target: ReleaseTarget
    blob: bytes
    archive: Path
    files: dict[str, str]  # relative path -> sha256 of what the release holds

    @property
    def version(self) -> str:
        return self.target.version


def make_release(
    work: Path,
    version: str,
    key: ReleaseKeyPair,
    *,
    name: str = NAME,
    arch: str = "any",
    payload_bytes: int = 20_000,
    n_files: int = 3,
) -> Release:
    """Build and sign a small service release in `work`."""
    src = work / f"src-{name}-{version}"
    src.mkdir(parents=True)
    (src / "fogline-module.yaml").write_text(module_yaml(name, version, arch=arch))
    (src / "app.py").write_text(f"print('demo {version}')\n")
    (src / "data").mkdir()
    for i in range(n_files):
        # Incompressible bytes, so archives have several download chunks.
        seed = f"{name}-{version}-{i}".encode()
        blob = b"".join(
            hashlib.sha256(seed + bytes([j % 256, j // 256])).digest()
            for j in range(payload_bytes // 32)
        )
        (src / "data" / f"part{i}.bin").write_bytes(blob)
    info = build_release(src, work / f"{name}-{version}.tar.zst")
    envelope = sign_release(info.path, key)
    target = ReleaseTarget(
        name, version, info.digest, envelope.to_json(), config={"version": version}
    )
    # What installs: the source tree and the SBOM the build adds (its copy
    # beside the archive holds the same bytes).
    files = tree_digests(src)
    assert info.sbom_path is not None
    files[SBOM_FILE] = hashlib.sha256(info.sbom_path.read_bytes()).hexdigest()
    return Release(target, info.path.read_bytes(), info.path, files)


def hostile_release(work: Path, version: str, key: ReleaseKeyPair, evil_name: str) -> Release:
    """A signed archive whose second member escapes the install directory."""
    spec = module_yaml(NAME, version).encode()
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"hostile-{version}.tar.zst"
    with (
        path.open("wb") as raw,
        zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as out,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for member_name, data in (("fogline-module.yaml", spec), (evil_name, b"owned\n")):
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    envelope = sign_release(path, key)
    target = ReleaseTarget(NAME, version, envelope.digest, envelope.to_json())
    return Release(target, path.read_bytes(), path, {})


def tree_digests(root: Path) -> dict[str, str]:
    """Every file under `root` -> sha256 of its bytes (symlinks -> their target)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def trusted(*keys: ReleaseKeyPair) -> Callable[[], Mapping[str, Ed25519PublicKey]]:
    pinned = {k.key_id: k.public_key for k in keys}
    return lambda: pinned


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


@dataclass
class Node:
    """An updater over real files with fake ports, and everything it reported."""

    root: Path
    source: MemoryArtifactSource
    activator: MemoryActivator
    key: ReleaseKeyPair
    limits: UpdateLimits = field(default_factory=UpdateLimits)
    machine: str | None = "x86_64"
    crash_hook: Callable[[str], None] | None = None
    reports: list[UpdateProgress] = field(default_factory=list)
    tuf: TargetTrust | None = None

    def updater(self) -> Updater:
        """A fresh Updater, as after an agent restart."""
        return Updater(
            self.root,
            source=self.source,
            activator=self.activator,
            trusted_keys=trusted(self.key),
            on_progress=self.reports.append,
            limits=self.limits,
            crash_hook=self.crash_hook,
            machine=self.machine,
            sleep=no_sleep,
            tuf=self.tuf,
        )

    def states(self) -> list[State]:
        """The reported states, each run of repeats (download progress) counted once."""
        states = [r.state for r in self.reports]
        return [s for i, s in enumerate(states) if i == 0 or states[i - 1] is not s]

    def module_dir(self) -> Path:
        return self.root / "modules" / NAME

    def link(self, which: str) -> str | None:
        path = self.module_dir() / which
        return os.readlink(path) if path.is_symlink() else None


MakeNode = Callable[..., Node]


def serve(*releases: Release, **kwargs: object) -> MemoryArtifactSource:
    return MemoryArtifactSource({r.target.digest: r.blob for r in releases}, **kwargs)  # type: ignore[arg-type]


class FileActivator(MemoryActivator):
    """A MemoryActivator whose running versions live in a file, like module
    processes that outlive a killed agent (systemd units)."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.path = path
        if path.exists():
            self.running = json.loads(path.read_text())

    async def start(
        self, name: str, install_dir: Path, spec: ModuleSpec, target: ReleaseTarget
    ) -> None:
        await super().start(name, install_dir, spec, target)
        self._save()

    async def stop(self, name: str) -> None:
        await super().stop(name)
        self._save()

    def _save(self) -> None:
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.running))
        os.replace(temp, self.path)
