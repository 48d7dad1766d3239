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

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ENV, start_hub

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)
# Each interpreter prints this once, before its first import.
_HEADER = "import time: self [us] | cumulative | imported package"
# The command line's (not click: uvicorn imports it): `fogline hub serve` execs a lean
# program once its flags are checked.
NOT_AFTER_THE_EXEC = frozenset(
    {"typer", "rich", "fogline.cli._hub", "fogline.cli._common", "fogline.cli._app"}
)

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
            log = hub.log_path.read_text(errors="replace")
            idle = set(_IMPORTED.findall(log))
            assert "fogline.hub._app" in idle  # the log does list the hub's imports
            assert idle & NOT_AT_IDLE == set()
            # `fogline hub serve`, then its lean program (and the workers it
            # forks), then the workers' parent: the CLI's imports stay in the
            # first, which never imports the hub (it would twice: start time).
            runs = log.split(_HEADER)
            assert len(runs) == 4, len(runs)
            before_exec = set(_IMPORTED.findall(runs[1]))
            assert {"typer", "fogline.cli._hub_main"} <= before_exec
            assert sorted(m for m in before_exec if m.split(".")[:2] == ["fogline", "hub"]) == []
            served = set(_IMPORTED.findall("".join(runs[2:])))
            assert "fogline.hub._app" in served and served & NOT_AFTER_THE_EXEC == set()
            assert hub.proc is not None
            cmdline = Path(f"/proc/{hub.proc.pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[1:4] == [b"-P", b"-m", b"fogline._hub_parent"]
            for worker in _children(hub.proc.pid):
                shown = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
                assert shown[1:6] == [b"-P", b"-m", b"fogline.cli._hub_main", b"hub", b"serve"]
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


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_ca_key_passphrase_is_in_no_hub_process_s_command_line_or_environment(
    tmp_path: Path,
) -> None:
    passphrase = "correct-horse-battery-" + os.urandom(8).hex()
    secret = tmp_path / "passphrase"
    secret.write_text(passphrase + "\n")
    secret.chmod(0o600)
    hub = start_hub(
        tmp_path / "hub", extra_args=["--workers", "2", "--ca-key-passphrase-file", str(secret)]
    )
    try:
        assert hub.proc is not None
        # The hub's parent (exec'd again once the workers were forked) and both workers.
        pids = [hub.proc.pid, *_children(hub.proc.pid)]
        assert len(pids) == 3, pids
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert passphrase.encode() not in cmdline + environ, pid
        # The workers were given the file's path, and the key is sealed with what it holds.
        assert str(secret).encode() in Path(f"/proc/{pids[1]}/cmdline").read_bytes()
        assert b"ENCRYPTED" in (hub.data_dir / "ca-key.pem").read_bytes()[:40]
    finally:
        hub.stop()


def _lean(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in ENV.items() if k != "FOGLINE_HUB_OPTIONS"}
    return subprocess.run(
        [sys.executable, "-P", "-m", "fogline.cli._hub_main", "hub", "serve"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (None, "no FOGLINE_HUB_OPTIONS: start the hub with `fogline hub serve`"),
        ("{not json", "FOGLINE_HUB_OPTIONS: Expecting property name"),
        ("[]", "FOGLINE_HUB_OPTIONS: not a JSON object"),
        ('{"port": 1}', "FOGLINE_HUB_OPTIONS: data_dir: missing"),
        ('{"data_dir": "d", "passphrase": "x"}', "unknown option 'passphrase'"),
        ('{"data_dir": "d", "workers": "2"}', "workers: expected int, got str"),
        ('{"data_dir": "d", "workers": true}', "workers: expected int, got bool"),
        ('{"data_dir": "d", "report_interval": NaN}', "report_interval: expected float"),
        ('{"data_dir": "d\\u0000"}', "data_dir: expected Path, got str"),
        ('{"data_dir": "d", "san": [1]}', "san: expected list[str], got list"),
        ('{"data_dir": "' + "d" * 70_000 + '"}', "longer than 65536 characters"),
    ],
)
def test_the_lean_hub_program_refuses_options_it_cannot_use_in_one_line(
    tmp_path: Path, options: str | None, reason: str
) -> None:
    done = _lean({} if options is None else {"FOGLINE_HUB_OPTIONS": options})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert reason in done.stderr, done.stderr
    assert not (tmp_path / "d").exists()


def test_the_lean_hub_program_checks_every_flag_again_as_a_usage_error(tmp_path: Path) -> None:
    """What did not come through `fogline hub serve`'s Typer is checked all the same."""
    data = tmp_path / "hub"
    for options, expected in (
        ({"workers": 0}, "Invalid value for --workers: 0 is not in the range 1<=x<=64."),
        ({"tls_ticket_period": "8d"}, "Invalid value for --tls-ticket-period: must be between"),
        ({"metrics_listen": "0.0.0.0:9464"}, "Invalid value for --metrics-listen: 0.0.0.0 is"),
    ):
        done = _lean({"FOGLINE_HUB_OPTIONS": json.dumps({"data_dir": str(data), **options})})
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("Usage: fogline hub serve [OPTIONS]\n"), done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not data.exists()


def test_a_passphrase_file_open_to_others_stops_the_hub_in_one_line(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("correct-horse-battery-staple\n")
    secret.chmod(0o644)
    done = subprocess.run(
        [
            sys.executable, "-m", "fogline", "hub", "serve", "--data-dir", str(tmp_path / "hub"),
            "--ca-key-passphrase-file", str(secret),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(secret) in lines[0], lines
    assert "correct-horse" not in done.stderr
    assert not (tmp_path / "hub").exists()
