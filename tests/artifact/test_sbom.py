"""Release SBOMs: written by build_release inside the archive and beside it,
listing every file's SHA-256 and the packages the release's manifests name."""

import hashlib
import json
import textwrap
from importlib import metadata
from pathlib import Path

from fogline.artifact import (
    SBOM_FILE,
    build_release,
    read_release_sbom,
    sbom_packages,
    sbom_path,
)

from ._support import SMALL_SPEC, make_module, member, write_archive


def _vendored(src: Path) -> Path:
    """A module with a vendored Python distribution, an npm lockfile (v3 and
    v1), pinned requirements and a PEP 751 lock."""
    make_module(src)
    dist = src / "lib" / "Requests-2.19.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: Requests\nVersion: 2.19.0\n\nx\n")
    (src / "ui").mkdir()
    lock3 = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "ui", "version": "0.1.0"},
            "node_modules/lodash": {"version": "4.17.20"},
            "node_modules/@babel/core": {"version": "7.0.0"},
            "node_modules/lodash/node_modules/ms": {"version": "2.0.0"},
            "node_modules/local": {"link": True, "resolved": "../local"},
        },
    }
    (src / "ui" / "package-lock.json").write_text(json.dumps(lock3))
    (src / "old").mkdir()
    lock1 = {
        "lockfileVersion": 1,
        "dependencies": {
            "minimist": {"version": "1.2.0", "dependencies": {"x": {"version": "3.0.0"}}}
        },
    }
    (src / "old" / "package-lock.json").write_text(json.dumps(lock1))
    (src / "requirements.txt").write_text(
        "# pinned only\nurllib3==1.26.4 --hash=sha256:abc\nflask>=2\nJinja2 == 3.1.2  # ok\n"
        "-r other.txt\nnumpy==1.*\n"
    )
    (src / "pylock.toml").write_text(
        textwrap.dedent("""\
            lock-version = "1.0"
            created-by = "test"
            [[packages]]
            name = "PyYAML"
            version = "6.0.1"
            """)
    )
    return src


def test_the_sbom_is_inside_the_archive_and_beside_it_with_every_file_hashed(
    tmp_path: Path,
) -> None:
    src = _vendored(tmp_path / "mod")
    info = build_release(src, tmp_path / "r.tar.zst")
    assert info.sbom_path == sbom_path(info.path) == tmp_path / "r.tar.zst.cdx.json"
    inside = read_release_sbom(info.path)
    assert inside is not None and inside == info.sbom_path.read_bytes()
    document = json.loads(inside)
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.6")
    assert document["metadata"]["component"]["name"] == "thermo-filter"
    assert document["metadata"]["component"]["version"] == "1.2.0"
    files = {
        c["name"]: c["hashes"][0]["content"] for c in document["components"] if c["type"] == "file"
    }
    expected = {
        p.relative_to(src).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in src.rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    assert files == expected  # every regular file, the module file too; no links or dirs
    assert SBOM_FILE not in files


def test_the_sbom_names_each_recognised_package_with_a_package_url(tmp_path: Path) -> None:
    info = build_release(_vendored(tmp_path / "mod"), tmp_path / "r.tar.zst")
    document = json.loads(info.sbom_path.read_bytes())  # type: ignore[union-attr]
    found = {(p.purl, p.found_in) for p in sbom_packages(document)}
    assert found == {
        ("pkg:pypi/requests@2.19.0", "lib/Requests-2.19.0.dist-info/METADATA"),
        ("pkg:npm/lodash@4.17.20", "ui/package-lock.json"),
        ("pkg:npm/%40babel/core@7.0.0", "ui/package-lock.json"),
        ("pkg:npm/ms@2.0.0", "ui/package-lock.json"),
        ("pkg:npm/minimist@1.2.0", "old/package-lock.json"),
        ("pkg:npm/x@3.0.0", "old/package-lock.json"),
        ("pkg:pypi/urllib3@1.26.4", "requirements.txt"),
        ("pkg:pypi/jinja2@3.1.2", "requirements.txt"),
        ("pkg:pypi/pyyaml@6.0.1", "pylock.toml"),
    }
    ecosystems = {p.name: p.ecosystem for p in sbom_packages(document)}
    assert ecosystems["@babel/core"] == "npm" and ecosystems["pyyaml"] == "PyPI"


def test_the_same_directory_builds_the_same_sbom_and_an_old_sbom_in_it_is_replaced(
    tmp_path: Path,
) -> None:
    src = _vendored(tmp_path / "mod")
    first = build_release(src, tmp_path / "a.tar.zst")
    (src / SBOM_FILE).write_text('{"bomFormat": "CycloneDX", "components": []}')  # stale copy
    second = build_release(src, tmp_path / "b.tar.zst")
    assert first.digest == second.digest
    assert (tmp_path / "a.tar.zst.cdx.json").read_bytes() == (
        tmp_path / "b.tar.zst.cdx.json"
    ).read_bytes()
    assert "timestamp" not in json.loads((tmp_path / "a.tar.zst.cdx.json").read_bytes())["metadata"]


def test_a_malformed_manifest_names_nothing_and_still_builds(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    (src / "package-lock.json").write_text("{not json")
    (src / "requirements.txt").write_bytes(b"\xff\xfe==1\n")
    info = build_release(src, tmp_path / "r.tar.zst")
    document = json.loads(info.sbom_path.read_bytes())  # type: ignore[union-attr]
    assert sbom_packages(document) == []
    assert {"package-lock.json", "requirements.txt"} <= {c["name"] for c in document["components"]}


def test_an_agent_release_lists_the_agents_python_dependencies(tmp_path: Path) -> None:
    src = tmp_path / "agent"
    (src / "fogline").mkdir(parents=True)
    (src / "fogline" / "__main__.py").write_text("print('agent')\n")
    (src / "fogline-module.yaml").write_text(
        "name: fogline-agent\nversion: 9.9.9\nkind: agent\narchitectures: [any]\n"
    )
    info = build_release(src, tmp_path / "agent.tar.zst")
    document = json.loads(read_release_sbom(info.path) or b"{}")
    purls = {p.purl for p in sbom_packages(document)}
    # fogline's own requirements, at the versions installed where it was built.
    for dependency in ("pydantic", "httpx", "cryptography", "zstandard"):
        assert f"pkg:pypi/{dependency}@{metadata.version(dependency)}" in purls
    assert not any(p.startswith("pkg:pypi/fogline@") for p in purls)
    assert document["metadata"]["component"]["properties"] == [
        {"name": "fogline:kind", "value": "agent"}
    ]


def test_an_archive_built_without_an_sbom_has_none(tmp_path: Path) -> None:
    archive = tmp_path / "old.tar.zst"
    write_archive(archive, [member("fogline-module.yaml", SMALL_SPEC), member("a.txt", b"x")])
    assert read_release_sbom(archive) is None
