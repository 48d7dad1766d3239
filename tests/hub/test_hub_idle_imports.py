"""A serving hub does not hold what only operators' rarer requests or its own
start need (issue #18, "Bulk downloads": hub memory at idle).

Real hub with two workers, run with `PYTHONPROFILEIMPORTTIME=1`, so its log
lists every module any of its processes imported. Until an operator opens
the console, pushes a release or imports vulnerability data, none of the
console's templates (Jinja2), the SBOM code (CycloneDX), the pipeline
schema nor the OSV/CVSS code is among them; the console's first page loads
Jinja2 and renders. The schema migrations run in a child process
(upgrade_schema_apart): Alembic never enters the process the workers fork
from, and a failed migration fails the start with its traceback.
"""

import re
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ENV, start_hub

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)

NOT_AT_IDLE = frozenset(
    {
        "jinja2",
        "cyclonedx",
        "fogline.artifact._sbom",
        "fogline.pipeline._spec",
        "fogline.pipeline._spec_base",
        "fogline.pipeline._spec_detect",
        "fogline.pipeline._spec_outputs",
        "fogline.vulns._osv",
        "fogline.vulns._match",
        "cvss",
        "semver",
    }
)


def test_a_serving_hub_loads_operator_only_code_on_first_use(tmp_path: Path) -> None:
    hub = start_hub(
        tmp_path / "hub", extra_args=["--workers", "2"], env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    try:
        with hub.client() as client:
            for _ in range(4):  # on both workers, most likely
                assert client.get("/healthz").status_code == 200
            assert client.get("/v1/devices").status_code == 200
            idle = set(_IMPORTED.findall(hub.log_path.read_text(errors="replace")))
            assert "fogline.hub._app" in idle  # the log does list the hub's imports
            assert idle & NOT_AT_IDLE == set()
            page = client.get("/console/sign-in")
            assert page.status_code == 200 and "<form" in page.text
        assert "jinja2" in set(_IMPORTED.findall(hub.log_path.read_text(errors="replace")))
    finally:
        hub.stop()


_MIGRATE = """
import sys
from fogline.hub._serve import SchemaUpgradeError, upgrade_schema_apart
assert "alembic" not in sys.modules
try:
    upgrade_schema_apart(sys.argv[1])
except SchemaUpgradeError as exc:
    print("failed:", exc)
    sys.exit(3)
assert "alembic" not in sys.modules, "imported in this process"
print("migrated")
"""


def _migrate(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _MIGRATE, url],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )


def test_the_migrations_run_in_a_child_that_reports_failure(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    done = _migrate(f"sqlite:///{db}")
    assert done.returncode == 0 and done.stdout.strip() == "migrated", done.stderr
    import sqlite3

    with sqlite3.connect(db) as connection:
        (head,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert head

    failed = _migrate(f"sqlite:///{tmp_path / 'missing' / 'hub.db'}")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "failed: the schema migrations failed (exit code 1)" in failed.stdout
    assert "Traceback" in failed.stderr and "unable to open database file" in failed.stderr
