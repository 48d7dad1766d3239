"""The offline vulnerability database against a real hub and a real agent:
import OSV files, see what was imported, and find the devices that run a
release affected by an advisory."""

import io
import json
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import AgentProcess, HubProcess, start_hub, wait_until

OSV = Path(__file__).parents[1] / "vulns" / "osv"


@dataclass(frozen=True)
class Fleet:
    hub: HubProcess
    root: Path
    node: str


def _release(hub: HubProcess, root: Path, key: Path, version: str, urllib3: str) -> None:
    src = root / f"web-{version}"
    dist = src / "site" / f"urllib3-{urllib3}.dist-info"
    dist.mkdir(parents=True)
    (src / "fogline-module.yaml").write_text(
        f"name: web\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: urllib3\nVersion: {urllib3}\n")
    lock = {"lockfileVersion": 3, "packages": {"node_modules/lodash": {"version": "4.17.20"}}}
    (src / "package-lock.json").write_text(json.dumps(lock))
    archive = root / f"web-{version}.tar.zst"
    hub.cli("release", "build", str(src), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("vulns")
    hub = start_hub(root / "hub")
    agent = None
    try:
        key_doc = hub.cli("keys", "create", "ci", "--dir", str(root / "keys")).stdout
        hub.cli("apply", "-f", "-", input_text=key_doc)
        _release(hub, root, root / "keys" / "ci.key", "1.0.0", urllib3="1.26.4")
        _release(hub, root, root / "keys" / "ci.key", "2.0.0", urllib3="1.26.5")
        agent = AgentProcess(root / "node", hub, "node-v1", hub.create_claim(labels="fleet=vulns"))
        agent.start()
        agent.wait_enrolled()
        hub.cli(
            "apply",
            "-f",
            "-",
            input_text=textwrap.dedent("""\
                apiVersion: fogline.dev/v1
                kind: Deployment
                metadata: {name: web}
                spec:
                  selector: {matchLabels: {fleet: vulns}}
                  modules: [{name: web, release: web@1.0.0}]
                """),
        )

        def running() -> bool:
            modules = (hub.device("node-v1").get("reported") or {}).get("modules") or {}
            return (modules.get("modules") or {}).get("web", {}).get("version") == "1.0.0"

        wait_until(running, 60, "node-v1 reports web 1.0.0")
        yield Fleet(hub, root, "node-v1")
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()


def _json(result: object) -> object:
    return json.loads(result.stdout)  # type: ignore[attr-defined]


def test_an_import_lists_what_it_finds_in_deployed_releases(fleet: Fleet) -> None:
    imported = fleet.hub.cli("vulndb", "import", str(OSV / "pypi"), "--output", "json")
    findings = json.loads(imported.stdout)
    # PY-0001 (urllib3 < 1.26.5) hits web 1.0.0, which node-v1 runs; the
    # withdrawn PY-0003 and idna's PY-0002 (not in any release) do not.
    assert [(f["advisory"], f["release"], f["running"]) for f in findings] == [
        ("FOGTEST-PY-0001", "web@1.0.0", 1)
    ]
    assert findings[0]["severity"] == "critical" and findings[0]["score"] == 9.8
    assert findings[0]["package"] == "pkg:pypi/urllib3@1.26.4"
    assert "imported 3 advisories from pypi (3 new or updated)" in imported.stderr


def test_vulns_ls_is_newest_first_and_answers_which_devices_run_an_advisory(
    fleet: Fleet,
) -> None:
    npm_zip = fleet.root / "npm-all.zip"
    with zipfile.ZipFile(npm_zip, "w") as archive:
        for path in sorted((OSV / "npm").glob("*.json")):
            archive.write(path, path.name)
    fleet.hub.cli("vulndb", "import", str(npm_zip))
    fleet.hub.cli("vulndb", "import", str(OSV / "pypi"))  # again: idempotent
    listed = _json(fleet.hub.cli("vulns", "ls", "--output", "json"))
    assert [(f["advisory"], f["release"]) for f in listed] == [  # type: ignore[union-attr]
        ("FOGTEST-NPM-0001", "web@1.0.0"),  # published 2026-11-04
        ("FOGTEST-PY-0001", "web@1.0.0"),  # published 2026-11-01
    ]
    # web 2.0.0 is fixed for urllib3 but still holds lodash 4.17.20; nobody runs it.
    everything = _json(fleet.hub.cli("vulns", "ls", "--all", "--output", "json"))
    assert ("FOGTEST-NPM-0001", "web@2.0.0", False) in [
        (f["advisory"], f["release"], f["deployed"])
        for f in everything  # type: ignore[union-attr]
    ]
    devices = fleet.hub.cli("vulns", "devices", "FOGTEST-NPM-0001", "--output", "table")
    assert devices.stdout.split() == [fleet.node]
    as_json = fleet.hub.cli("vulns", "devices", "FOGTEST-NPM-0001", "--output", "json")
    assert json.loads(as_json.stdout) == [fleet.node]
    one = _json(fleet.hub.cli("vulns", "ls", "--advisory", "FOGTEST-PY-0001", "--output", "json"))
    assert [f["devices"] for f in one] == [[fleet.node]]  # type: ignore[union-attr]
    table = fleet.hub.cli("vulns", "ls", "--output", "table")
    assert "FOGTEST-NPM-0001" in table.stdout and "high 8.2" in table.stdout
    unknown = fleet.hub.cli("vulns", "ls", "--advisory", "NOPE-1", check=False)
    assert unknown.returncode == 1 and "no advisory 'NOPE-1'" in unknown.stderr


def test_vulndb_status_says_what_was_imported_and_how_old(fleet: Fleet) -> None:
    fleet.hub.cli("vulndb", "import", str(OSV / "pypi"))
    status = _json(fleet.hub.cli("vulndb", "status", "--output", "json"))
    assert status["ecosystems"]["PyPI"] == 2  # type: ignore[index]  # PY-0003 is withdrawn
    assert status["withdrawn"] == 1  # type: ignore[index]
    assert status["imports"][0]["source"] == "pypi"  # type: ignore[index]
    assert status["imports"][0]["stored"] == 0  # type: ignore[index]  # nothing newer
    table = fleet.hub.cli("vulndb", "status", "--output", "table")
    assert "PyPI 2" in table.stderr and "withdrawn" in table.stderr


def test_a_malformed_osv_file_refuses_the_whole_import_naming_it(fleet: Fleet) -> None:
    bad = fleet.root / "bad.zip"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("FOGTEST-OK-1.json", (OSV / "pypi" / "FOGTEST-PY-0002.json").read_bytes())
        archive.writestr("FOGTEST-BAD-1.json", b'{"id": "FOGTEST-BAD-1", "modified": "soon"}')
    bad.write_bytes(out.getvalue())
    before = _json(fleet.hub.cli("vulndb", "status", "--output", "json"))
    refused = fleet.hub.cli("vulndb", "import", str(bad), check=False)
    assert refused.returncode == 1
    assert "bad.zip:FOGTEST-BAD-1.json: modified:" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    after = _json(fleet.hub.cli("vulndb", "status", "--output", "json"))
    assert after == before  # nothing half imported, no import recorded
    junk = fleet.root / "junk.zip"
    junk.write_bytes(b"not a zip")
    refused = fleet.hub.cli("vulndb", "import", str(junk), check=False)
    assert refused.returncode == 1 and "junk.zip: not a zip file" in refused.stderr


def test_an_import_is_audited(fleet: Fleet) -> None:
    fleet.hub.cli("vulndb", "import", str(OSV / "npm"))
    audit = fleet.hub.cli("audit", "ls", "--output", "json", check=False)
    assert audit.returncode == 0, audit.stderr
    assert any(
        e["action"] == "vulndb.import" and e["target"] == "npm" for e in json.loads(audit.stdout)
    )
