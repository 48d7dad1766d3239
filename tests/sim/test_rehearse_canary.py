"""`fogline rollout rehearse` with canary analysis: virtual nodes report
health through the agent's Reporter, a metric fault makes a release leak,
and the rehearsal says whether (and when) the analysis caught it."""

import json
import textwrap
from pathlib import Path

from .test_rehearse import fogline

BASELINE = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector:
        matchLabels: {site: berlin}
      modules:
        - {name: web, release: web@1.0.0}
    """)
UPGRADE = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector:
        matchLabels: {site: berlin}
      modules:
        - {name: web, release: web@2.0.0}
      rollout:
        waves: [25%, 100%]
        bake: 8s
        waveTimeout: 60s
        analysis:
          metrics:
            - {metric: module-rss-growth, module: web, tolerance: 1GB/h}
            - {metric: module-cpu, module: web, tolerance: 50%}
          minSamples: 4
          inconclusive: fail
    """)


def _rehearse(tmp_path: Path, faults: str) -> tuple[int, dict, str]:
    (tmp_path / "base.yaml").write_text(BASELINE)
    (tmp_path / "up.yaml").write_text(UPGRADE)
    result = fogline(
        "rollout", "rehearse", "-f", str(tmp_path / "up.yaml"),
        "--baseline", str(tmp_path / "base.yaml"), "--devices", "16", "--processes", "1",
        "--timeout", "150s", "--faults", faults, "-o", "json",
        timeout_s=200,
    )  # fmt: skip
    return result.returncode, json.loads(result.stdout or "{}"), result.stderr


def test_a_leaking_release_is_paused_in_wave_1_by_the_analysis(tmp_path: Path) -> None:
    code, report, stderr = _rehearse(tmp_path, "mem-leak:web@2.0.0=10GB/h")
    assert code == 1, stderr
    assert report["outcome"] == "paused" and report["wave"] == 1, report
    assert "canary analysis fail: module-rss-growth(web)" in report["reason"]
    analysis = report["analysis"]
    assert analysis["caught"] is True
    caught = analysis["first_failure"]
    assert caught["wave"] == 1 and caught["metrics"]["module-rss-growth(web)"] == "fail"
    assert caught["metrics"]["module-cpu(web)"] == "pass"
    assert 8 <= caught["after_s"] < 150  # after the bake


def test_the_same_rehearsal_with_a_good_release_completes(tmp_path: Path) -> None:
    code, report, stderr = _rehearse(tmp_path, "mem-leak:web@1.0.0=10GB/h")
    assert code == 0, stderr
    assert report["outcome"] == "completed", report
    [wave] = report["analysis"]["waves"]
    assert wave["outcome"] == "pass" and set(wave["metrics"].values()) == {"pass"}


def test_a_release_whose_pipelines_fail_is_paused_by_the_pipeline_errors_metric(
    tmp_path: Path,
) -> None:
    (tmp_path / "base.yaml").write_text(BASELINE)
    upgrade = UPGRADE.replace(
        "- {metric: module-cpu, module: web, tolerance: 50%}",
        "- {metric: pipeline-errors, tolerance: 1000/h}",
    )
    (tmp_path / "up.yaml").write_text(upgrade)
    result = fogline(
        "rollout", "rehearse", "-f", str(tmp_path / "up.yaml"),
        "--baseline", str(tmp_path / "base.yaml"), "--devices", "16", "--processes", "1",
        "--timeout", "150s", "--faults", "pipeline-errors:web@2.0.0=100000/h", "-o", "json",
        timeout_s=200,
    )  # fmt: skip
    report = json.loads(result.stdout or "{}")
    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "paused" and report["wave"] == 1, report
    assert "canary analysis fail: pipeline-errors" in report["reason"]
    caught = report["analysis"]["first_failure"]
    assert caught["metrics"] == {"module-rss-growth(web)": "pass", "pipeline-errors": "fail"}
