"""What is inside a release: a CycloneDX SBOM written by `build_release`.

The SBOM is the archive's second entry, `fogline-sbom.cdx.json`, right after
the module file, and a copy is written beside the archive (`ARCHIVE.cdx.json`).
Being inside the archive, it is covered by the archive's digest and so by the
release signature: the hub reads it from the signed bytes at push, never
from a file the pusher sends beside them.

It lists every regular file with its SHA-256, and the software components it
recognises, each with a package URL:

* Python distributions, by `*.dist-info/METADATA` (Name, Version);
* npm packages, by `package-lock.json` (lockfile v1, v2 and v3);
* pinned Python requirements: `requirements*.txt` lines `name==version`,
  and `pylock.toml` / `pylock.*.toml` (PEP 751) `[[packages]]`;
* for a `kind: agent` release, the agent's own Python dependencies: the
  `fogline` distribution's requirements as installed where the release was
  built (the node runs the agent release with that environment's libraries).

Same inputs, same bytes: no timestamp, a serial number derived from the
content, components and files sorted.
"""

import email.parser
import hashlib
import json
import os
import re
import tomllib
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Final

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ._errors import UnsafeArchiveError
from ._spec import ModuleSpec
from ._tarread import TarReader, open_release
from ._unpack import _read_module_file as read_module_file

SBOM_FILE: Final = "fogline-sbom.cdx.json"
SBOM_SUFFIX: Final = ".cdx.json"
# 100 000 files (the install limit) at ~250 bytes each, and the components.
MAX_SBOM_BYTES: Final = 48 << 20
# Manifests read for components; a larger one is hashed but not parsed.
MAX_MANIFEST_BYTES: Final = 16 << 20
_MAX_COMPONENTS: Final = 100_000
_CHUNK: Final = 1 << 20
_FOUND_IN: Final = "fogline:found-in"
_SERIAL_NAMESPACE: Final = uuid.UUID("6f1e6a3c-3b0e-5d57-9a53-6f0b0c1e2d10")
_KIND_TYPES: Final = {
    "service": ComponentType.APPLICATION,
    "agent": ComponentType.APPLICATION,
    "model": ComponentType.MACHINE_LEARNING_MODEL,
    "config": ComponentType.DATA,
}
_REQUIREMENTS_RE: Final = re.compile(r"requirements[\w.-]*\.txt", re.ASCII)
_PYLOCK_RE: Final = re.compile(r"pylock(\.[\w-]+)?\.toml", re.ASCII)


@dataclass(frozen=True, slots=True)
class SbomPackage:
    """A software component an SBOM names: ecosystem (OSV's spelling), name, version."""

    ecosystem: str  # "PyPI" or "npm"
    name: str
    version: str
    purl: str
    found_in: str  # the file (path in the release) it was recognised by


@dataclass(frozen=True, slots=True)
class HashedFile:
    """A regular file of a release: its path in the archive and SHA-256 (hex)."""

    name: str
    sha256: str


def sbom_path(archive: Path) -> Path:
    """Where the copy of an archive's SBOM lives: the archive's name plus `.cdx.json`."""
    archive = Path(archive)
    return archive.with_name(archive.name + SBOM_SUFFIX)


def hash_file(path: str, *, keep: bool) -> tuple[str, bytes | None]:
    """SHA-256 (hex) of a regular file, and its bytes if `keep` (a manifest we parse).

    Raises:
        UnsafeArchiveError: the path is no longer a regular file (raced).
        OSError: it cannot be read.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    digest = hashlib.sha256()
    kept = bytearray()
    with os.fdopen(os.open(path, flags), "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if keep and len(kept) <= MAX_MANIFEST_BYTES:
                kept += chunk
    data = bytes(kept) if keep and len(kept) <= MAX_MANIFEST_BYTES else None
    return digest.hexdigest(), data


def is_manifest(parts: tuple[str, ...]) -> bool:
    """True for the files whose contents name components (see the module docstring)."""
    name = parts[-1]
    if name == "METADATA":
        return len(parts) >= 2 and parts[-2].endswith(".dist-info")
    return (
        name == "package-lock.json"
        or _REQUIREMENTS_RE.fullmatch(name) is not None
        or _PYLOCK_RE.fullmatch(name) is not None
    )


def recognise(name: str, data: bytes) -> list[SbomPackage]:
    """The components the manifest file `name` (a path in the release) names.

    A manifest that cannot be parsed names nothing: the SBOM still lists the
    file and its hash, and the build does not fail on a vendored oddity.
    """
    parts = tuple(name.split("/"))
    try:
        text = data.decode("utf-8")
        if parts[-1] == "METADATA":
            return _dist_info(name, text)
        if parts[-1] == "package-lock.json":
            return list(_package_lock(name, json.loads(text)))
        if _PYLOCK_RE.fullmatch(parts[-1]):
            return list(_pylock(name, tomllib.loads(text)))
        return list(_requirements(name, text))
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError, tomllib.TOMLDecodeError):
        return []


def pypi_package(name: str, version: str, found_in: str) -> SbomPackage:
    normal = canonicalize_name(name)
    purl = PackageURL(type="pypi", name=normal, version=version).to_string()
    return SbomPackage("PyPI", normal, version, purl, found_in)


def npm_package(name: str, version: str, found_in: str) -> SbomPackage:
    namespace, _, bare = name.rpartition("/")
    purl = PackageURL(type="npm", namespace=namespace or None, name=bare, version=version)
    return SbomPackage("npm", name, version, purl.to_string(), found_in)


def _dist_info(name: str, text: str) -> list[SbomPackage]:
    headers = email.parser.HeaderParser().parsestr(text)
    dist, version = headers.get("Name"), headers.get("Version")
    if not dist or not version:
        return []
    return [pypi_package(str(dist).strip(), str(version).strip(), name)]


def _package_lock(name: str, lock: Mapping[str, Any]) -> Iterator[SbomPackage]:
    packages = lock.get("packages")
    if isinstance(packages, Mapping):  # lockfile v2 and v3
        for path, entry in packages.items():
            if not path or not isinstance(entry, Mapping) or entry.get("link"):
                continue  # "" is the project itself; links point at other entries
            dep = entry.get("name") or str(path).rpartition("node_modules/")[2]
            if isinstance(dep, str) and isinstance(entry.get("version"), str) and dep:
                yield npm_package(dep, entry["version"], name)
        return
    # Lockfile v1: nested "dependencies", walked with a stack, never recursion.
    pending: list[Any] = [lock.get("dependencies")]
    seen = 0
    while pending and seen < _MAX_COMPONENTS:
        deps = pending.pop()
        if not isinstance(deps, Mapping):
            continue
        for dep, entry in deps.items():
            seen += 1
            if isinstance(entry, Mapping) and isinstance(entry.get("version"), str):
                if not entry["version"].startswith(("file:", "link:", "git")):
                    yield npm_package(str(dep), entry["version"], name)
                pending.append(entry.get("dependencies"))


def _pylock(name: str, lock: Mapping[str, Any]) -> Iterator[SbomPackage]:
    for entry in lock.get("packages") or ():
        if isinstance(entry, Mapping):
            dist, version = entry.get("name"), entry.get("version")
            if isinstance(dist, str) and isinstance(version, str):
                yield pypi_package(dist, version, name)


def _requirements(name: str, text: str) -> Iterator[SbomPackage]:
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        # Hash options (`--hash=...`) follow the requirement on the same line.
        line = line.split(" --", 1)[0].strip().rstrip("\\").strip()
        pinned = _pinned(line)
        if pinned is not None:
            yield pypi_package(pinned[0], pinned[1], name)


def _pinned(text: str) -> tuple[str, str] | None:
    """(name, version) of `name==version` (or `===`); None for anything not pinned."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return None
    specs = list(requirement.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        return None
    return requirement.name, specs[0].version


def agent_dependencies(found_in: str, *, limit: int = 500) -> list[SbomPackage]:
    """The `fogline` distribution's requirements, transitively, as installed here.

    Extras are not followed; a requirement whose marker does not hold here,
    or that is not installed, is left out.
    """
    found: dict[str, SbomPackage] = {}
    pending = ["fogline"]
    while pending and len(found) < limit:
        dist_name = canonicalize_name(pending.pop())
        if dist_name in found:
            continue
        try:
            dist = importlib_metadata.distribution(dist_name)
        except importlib_metadata.PackageNotFoundError:
            continue
        found[dist_name] = pypi_package(dist_name, dist.version, found_in)
        for text in dist.requires or ():
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    found.pop("fogline", None)  # the release itself is the fogline package
    return list(found.values())


def render_sbom(
    spec: ModuleSpec, files: Sequence[HashedFile], packages: Iterable[SbomPackage]
) -> bytes:
    """The CycloneDX 1.6 JSON document of a release, deterministically."""
    unique = {p.purl: p for p in sorted(packages, key=lambda p: (p.purl, p.found_in))}
    root = Component(
        name=spec.name,
        version=str(spec.version),
        type=_KIND_TYPES.get(spec.kind, ComponentType.APPLICATION),
        bom_ref=f"release:{spec.name}@{spec.version}",
        properties=[Property(name="fogline:kind", value=spec.kind)],
    )
    libraries = [
        Component(
            name=p.name,
            version=p.version,
            type=ComponentType.LIBRARY,
            purl=PackageURL.from_string(p.purl),
            bom_ref=p.purl,
            properties=[Property(name=_FOUND_IN, value=p.found_in)],
        )
        for p in unique.values()
    ]
    file_components = [
        Component(
            name=f.name,
            type=ComponentType.FILE,
            bom_ref=f"file:{f.name}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f.sha256)],
        )
        for f in sorted(files, key=lambda f: f.name)
    ]
    content = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        content.update(f"{f.name}\0{f.sha256}\n".encode())
    serial = uuid.uuid5(_SERIAL_NAMESPACE, f"{spec.name}@{spec.version}:{content.hexdigest()}")
    bom = Bom(
        components=[*libraries, *file_components],
        metadata=BomMetaData(component=root),
        serial_number=serial,
    )
    bom.metadata.timestamp = None  # type: ignore[assignment]  # reproducible: no build time
    bom.register_dependency(root, libraries)
    with warnings.catch_warnings():
        # The library warns about an incomplete dependency graph; files have none.
        warnings.simplefilter("ignore")
        text = JsonV1Dot6(bom).output_as_string(indent=None)
    # Canonical key order, so the bytes do not depend on the library's.
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")).encode() + b"\n"


def read_release_sbom(archive: Path) -> bytes | None:
    """The SBOM inside a release archive (its second entry), or None when it has none.

    Raises:
        UnsafeArchiveError: the archive is malformed, or its SBOM larger than MAX_SBOM_BYTES.
        OSError: the archive cannot be read.
    """
    label = os.fspath(archive)
    with open_release(Path(archive), max_read_bytes=MAX_SBOM_BYTES + (1 << 20)) as reader:
        read_module_file(reader, label)
        return _read_sbom_entry(reader, label)


def _read_sbom_entry(reader: TarReader, label: str) -> bytes | None:
    entry = reader.next()
    if entry is None or entry.name != SBOM_FILE or entry.kind != "file":
        return None  # built before SBOMs, or by another tool
    if entry.size > MAX_SBOM_BYTES:
        raise UnsafeArchiveError(label, f"larger than {MAX_SBOM_BYTES} bytes", SBOM_FILE)
    return reader.read_data(entry.size)


def sbom_packages(document: Mapping[str, Any]) -> list[SbomPackage]:
    """The library components of a parsed SBOM that carry a PyPI or npm package URL."""
    found: list[SbomPackage] = []
    for component in document.get("components") or ():
        if not isinstance(component, Mapping) or not isinstance(component.get("purl"), str):
            continue
        try:
            purl = PackageURL.from_string(component["purl"])
        except ValueError:
            continue
        if not purl.version:
            continue
        where = ""
        for prop in component.get("properties") or ():
            if isinstance(prop, Mapping) and prop.get("name") == _FOUND_IN:
                where = str(prop.get("value", ""))
        if purl.type == "pypi":
            found.append(pypi_package(purl.name, purl.version, where))
        elif purl.type == "npm":
            name = f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name
            found.append(npm_package(name, purl.version, where))
    return found
