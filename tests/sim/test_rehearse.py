"""`fogline rollout rehearse`: plans, and end to end against a throwaway hub."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fogline.sim import RehearsalError, plan_rehearsal

MANIFEST = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector:
        matchLabels: {site: berlin}
      modules:
        - name: web
          release: web@3.0.0
          config: {greeting: hi}
      rollout: {waves: [1, 100%], bake: 1s, waveTimeout: 30s, onFailure: rollback}
    """)


def fogline(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fogline", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        # A bare environment, but the same code as the test (a worktree's src/).
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
    )


def test_the_plan_names_releases_labels_and_deployments(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(MANIFEST + "---\nkind: ReleaseKey\n---\n42\n")
    plan = plan_rehearsal([path])
    assert plan.releases == (("web", "3.0.0"),)
    assert plan.labels == {"site": "berlin"}
    assert plan.deployments == ("web",)
    assert plan.files == (("fleet.yaml", path.read_text()),)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (MANIFEST.replace("web@3.0.0", "sha256:" + "a" * 64), "expected NAME@VERSION"),
        (MANIFEST.replace("web@3.0.0", "web"), "expected NAME@VERSION"),
        ("kind: ReleaseKey\n", "no Deployment"),
        ("kind: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_manifest_that_cannot_be_rehearsed_is_refused(
    tmp_path: Path, text: str, why: str
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(RehearsalError, match=why) as info:
        plan_rehearsal([path])
    assert str(path) in str(info.value)


def test_bad_faults_exit_1_naming_the_item(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MANIFEST)
    result = fogline("rollout", "rehearse", "-f", str(tmp_path / "m.yaml"), "--faults", "loss=2")
    assert result.returncode == 1
    assert "loss=2" in result.stderr and "probability" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_good_release_completes_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MANIFEST)
    result = fogline(
        "rollout", "rehearse", "-f", str(tmp_path / "m.yaml"), "--devices", "8",
        "--processes", "1", "--timeout", "90s", "-o", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "completed" and report["ok"] is True
    assert report["devices"] == report["succeeded"] == 8 and report["failed"] == 0
    assert report["duration_s"] > 0
    # Every node downloaded the stand-in once: real bytes through the real updater.
    assert report["artifact_bytes"] >= 8 * 60_000
    assert report["http_bytes"] > report["artifact_bytes"]
    assert report["fleet"]["enrolled"] == 8
    # As in production: the throwaway hub has a TUF repository, every node
    # pinned its root at enrollment and asked ngclient before its download
    # (with a root pinned, the release keys of the desired state grant nothing).
    assert report["tuf"] == {"root_version": 1, "pinned": 8, "verified": 8}
    assert "TUF root v1 on the hub" in result.stderr
    assert "signed into TUF" in result.stderr


def test_an_unhealthy_release_is_rolled_back_and_exits_1_with_the_reason(
    tmp_path: Path,
) -> None:
    (tmp_path / "m.yaml").write_text(MANIFEST)
    result = fogline(
        "rollout", "rehearse", "-f", str(tmp_path / "m.yaml"), "--devices", "8",
        "--processes", "1", "--timeout", "90s", "--faults", "health-fail=1", "-o", "table",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "rolled back at wave 1/2" in result.stdout
    assert "maxFailures" in result.stdout  # the hub's reason
    assert "of artifacts" in result.stdout
    assert "TUF: root v1 pinned by 8 of 8 devices" in result.stdout
    # The counts add up to the devices: the failed canary is counted as reverted
    # (it was served its previous revision), the rest as not started.
    counts = re.search(r"(\d+) devices: (.*);", result.stdout)
    assert counts is not None, result.stdout
    parts = dict((word, int(n)) for n, word in re.findall(r"(\d+) ([a-z ]+?)(?:,|$)", counts[2]))
    assert sum(parts.values()) == int(counts[1]) == 8, counts[0]
    assert parts["reverted"] >= 1 and parts["failed"] == 0, counts[0]
