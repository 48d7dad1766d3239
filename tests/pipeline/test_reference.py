"""docs/pipeline-reference.md is what scripts/pipeline_reference.py writes from the schema.

The page lists every block and field a pipeline takes; it is generated from
the pydantic models (their field docstrings, types and limits), so a field
added, removed or changed in `fogline.pipeline` without regenerating the
page fails here.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pipeline_reference.py"
PAGE = ROOT / "docs" / "pipeline-reference.md"


def _script() -> ModuleType:
    loaded = importlib.util.spec_from_file_location("pipeline_reference", SCRIPT)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_the_committed_page_is_what_the_script_writes() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, (
        f"{result.stderr}docs/pipeline-reference.md is stale: run python {SCRIPT.relative_to(ROOT)}"
    )


def test_every_block_and_every_field_of_the_schema_is_on_the_page() -> None:
    script = _script()
    page = script.render()
    assert page == PAGE.read_text(encoding="utf-8")
    models = script.reachable_models()
    # The walk itself: every step kind, detector and action is found.
    names = {model.__name__ for model in models}
    for expected in (
        "DedupeSpec",
        "SampleSpec",
        "InferSpec",
        "HalfSpaceTreesSpec",
        "WebhookActionSpec",
    ):
        assert expected in names
    for model in models:
        section = page.split(f"## {script.ANCHORS[model]}\n", 1)[1].split("\n## ", 1)[0]
        for name, info in model.model_fields.items():
            assert f"| `{info.alias or name}` |" in section, (model.__name__, name)
    assert "| `hop` | duration | — | > 0s, ≤ 7d |" in page  # limits of an optional field


def test_a_field_without_a_description_stops_the_script(monkeypatch) -> None:
    script = _script()
    from fogline.pipeline._spec import SampleSpec

    monkeypatch.setattr(SampleSpec.model_fields["every"], "description", None)
    try:
        script.render()
    except SystemExit as exc:
        assert "SampleSpec.every has no docstring" in str(exc)
    else:
        raise AssertionError("an undocumented field must stop the script")
