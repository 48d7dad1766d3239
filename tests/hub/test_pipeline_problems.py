"""Every problem of a pipeline is reported at once, each at its own place (issue #19).

docs/manifests.md promises one line per problem; the hub used to report the
first problem of a pipeline and "(and 2 more problems in this pipeline)".
"""

import textwrap
from pathlib import Path

from tests.support.processes import HubProcess

BROKEN = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: broken}
    spec:
      selector: {}
      pipelines:
        - name: temps
          source: {mqtt: "sensors/{device}/temp"}
          steps:
            - {id: hot, filter: "value >"}
            - id: per-minute
              window: {type: tumbling, size: 1m, key: [device], aggregate: {m: "median(value)"}}
          outputs:
            - {from: nowhere, uplink: {stream: hot, priority: 5, ttl: 1d}}
    """)


def test_plan_reports_every_pipeline_problem_on_its_own_line(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(BROKEN)
    result = shared_hub.cli("plan", "-f", str(manifest), check=False)
    assert result.returncode == 1, result.stdout
    # One line per problem, each at the line and column of its own field.
    assert result.stderr.splitlines() == [
        f"error: {manifest}:10:29: spec.pipelines[0].steps[0].filter: column 8: "
        "incomplete expression",
        f"error: {manifest}:12:76: spec.pipelines[0].steps[1].window.aggregate.m: unknown "
        "aggregate function 'median'; expected one of count, sum, mean, min, max, stddev, "
        "first, last, p50, p95, p99",
        f"error: {manifest}:14:18: spec.pipelines[0].outputs[0].from: unknown step "
        "'nowhere'; steps are: hot, per-minute",
    ], result.stderr
