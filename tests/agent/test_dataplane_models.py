"""Models of infer steps on the node: found in installed model releases, loaded
off the event loop, swapped per pipeline without losing the other steps' state."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from fogline.agent.dataplane import (
    DataPlane,
    InstalledModels,
    MemoryPublisher,
    MemoryRecordSink,
    MemoryWebhookCaller,
    ModelSessions,
    PipelinesFailedError,
)
from fogline.pipeline import ModelLoadError, ModelRefSpec, load_onnx_model
from tests.support.onnx_models import save_linear_model

pytest.importorskip("onnx")


def model_release(root: Path, name: str, version: str, *, kind: str = "model") -> Path:
    """An install directory as the updater leaves it, with y = 2x + 1 as model.onnx."""
    install = root / name / version
    install.mkdir(parents=True)
    extra = "" if kind == "model" else 'command: [sleep, "60"]\nhealth: {uptime: 1s}\n'
    (install / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: {version}\nkind: {kind}\n{extra}architectures: [any]\n"
    )
    save_linear_model(install / "model.onnx", weights=[2.0], bias=1.0)
    return install


class Installs:
    """The updater's view: which version of each module is committed, and where."""

    def __init__(self) -> None:
        self.dirs: dict[str, tuple[str, Path]] = {}

    def add(self, name: str, version: str, path: Path) -> None:
        self.dirs[name] = (version, path)

    def installed(self, name: str) -> Any:
        found = self.dirs.get(name)
        return None if found is None else SimpleNamespace(target=SimpleNamespace(version=found[0]))

    def install_path(self, name: str) -> Path | None:
        found = self.dirs.get(name)
        return None if found is None else found[1]


def ref(release: str, file: str = "model.onnx") -> ModelRefSpec:
    return ModelRefSpec(release=release, file=file)


def infer_pipeline(name: str, release: str, *, window: bool = True) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"id": "model", "infer": {"model": {"release": release}, "inputs": ["x"], "output": "y"}}
    ]
    outputs: list[dict[str, Any]] = [{"from": "model", "uplink": {"stream": "scores"}}]
    if window:
        steps.append(
            {
                "id": "w",
                "window": {
                    "type": "tumbling",
                    "size": "10s",
                    "aggregate": {"n": "count()", "total": "sum(y)"},
                },
            }
        )
        outputs.append({"from": "w", "uplink": {"stream": "windows"}})
    return {
        "name": name,
        "source": {"http": {}},
        "timestamp": "ts",
        "steps": steps,
        "outputs": outputs,
    }


PLAIN = {"name": "plain", "source": {"http": {}}, "outputs": [{"uplink": {"stream": "raw"}}]}


class Loads:
    """A file loader that records where (which thread) and what it loaded."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.threads: set[int] = set()

    def __call__(self, path: Path) -> Any:
        self.files.append(path)
        self.threads.add(threading.get_ident())
        return load_onnx_model(path)


def plane(installs: Installs, loads: Loads | None = None) -> tuple[DataPlane, MemoryRecordSink]:
    sink = MemoryRecordSink()
    engine = DataPlane(
        MemoryPublisher(),
        sink,
        MemoryWebhookCaller(),
        models=ModelSessions(InstalledModels(installs), loads),
    )
    return engine, sink


def streams(sink: MemoryRecordSink, stream: str) -> list[dict[str, Any]]:
    return [orjson.loads(item.payload) for item in sink.items if item.stream == stream]


# -- finding the file -------------------------------------------------------------------


def test_the_committed_install_of_the_named_version_gives_the_file(tmp_path: Path) -> None:
    installs = Installs()
    install = model_release(tmp_path, "scorer", "1.0.0")
    installs.add("scorer", "1.0.0", install)
    path = InstalledModels(installs).model_path(ref("scorer@1.0.0"))
    assert path == (install / "model.onnx").resolve()


@pytest.mark.parametrize(
    ("setup", "reference", "reason"),
    [
        ("none", ref("scorer@1.0.0"), "release scorer@1.0.0 is not installed on this node;"),
        ("v1", ref("scorer@2.0.0"), "not installed on this node (scorer 1.0.0 is)"),
        ("service", ref("scorer@1.0.0"), "is kind 'service'; an infer step loads a release"),
        ("v1", ref("scorer@1.0.0", "other.onnx"), "has no file 'other.onnx'"),
        ("escape", ref("scorer@1.0.0", "outside.onnx"), "is not a file inside release"),
        ("v1", ref("scorer@1.0.0", "sub"), "is not a file inside release"),
    ],
)
def test_a_model_that_is_not_installed_as_named_is_refused_with_the_reason(
    tmp_path: Path, setup: str, reference: ModelRefSpec, reason: str
) -> None:
    installs = Installs()
    if setup != "none":
        install = model_release(
            tmp_path, "scorer", "1.0.0", kind="service" if setup == "service" else "model"
        )
        installs.add("scorer", "1.0.0", install)
        (install / "sub").mkdir()
        if setup == "escape":
            save_linear_model(tmp_path / "elsewhere.onnx", weights=[1.0], bias=0.0)
            (install / "outside.onnx").symlink_to(tmp_path / "elsewhere.onnx")
    with pytest.raises(ModelLoadError) as caught:
        InstalledModels(installs).model_path(reference)
    assert reason in caught.value.reason
    assert caught.value.model == str(reference)


# -- loading and swapping ---------------------------------------------------------------


def test_models_load_in_a_worker_thread_not_on_the_event_loop(tmp_path: Path) -> None:
    installs, loads = Installs(), Loads()
    installs.add("scorer", "1.0.0", model_release(tmp_path, "scorer", "1.0.0"))
    engine, sink = plane(installs, loads)

    async def scenario() -> int:
        await engine.reconfigure([infer_pipeline("score", "scorer@1.0.0")])
        await engine.on_http_records([{"x": 2, "ts": 1}])
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert len(loads.files) == 1 and loop_thread not in loads.threads
    assert [r["y"] for r in streams(sink, "scores")] == [5.0]


def test_a_new_model_version_replaces_the_session_and_the_window_keeps_its_state(
    tmp_path: Path,
) -> None:
    installs, loads = Installs(), Loads()
    installs.add("scorer", "1.0.0", model_release(tmp_path, "scorer", "1.0.0"))
    engine, sink = plane(installs, loads)
    v2 = tmp_path / "scorer" / "2.0.0"
    v2.mkdir(parents=True)
    (v2 / "fogline-module.yaml").write_text(
        "name: scorer\nversion: 2.0.0\nkind: model\narchitectures: [any]\n"
    )
    save_linear_model(v2 / "model.onnx", weights=[10.0], bias=0.0)

    async def scenario() -> None:
        await engine.reconfigure([infer_pipeline("score", "scorer@1.0.0")])
        await engine.on_http_records([{"x": 1, "ts": 1}])
        installs.add("scorer", "2.0.0", v2)  # the updater committed 2.0.0
        await engine.reconfigure([infer_pipeline("score", "scorer@2.0.0")])
        await engine.on_http_records([{"x": 1, "ts": 2}, {"x": 0, "ts": 12}])

    asyncio.run(scenario())
    assert [r["y"] for r in streams(sink, "scores")] == [3.0, 10.0, 0.0]
    (summary,) = streams(sink, "windows")
    assert (summary["n"], summary["total"]) == (2, 13.0)  # one window across both models
    assert engine.models.loaded() == ["scorer@2.0.0/model.onnx"]  # 1.0.0 released
    assert engine.pipelines["score"].counters()["model"]["in"] == 3


def test_a_pipeline_rebuilt_for_another_change_reuses_its_loaded_model(tmp_path: Path) -> None:
    installs, loads = Installs(), Loads()
    installs.add("scorer", "1.0.0", model_release(tmp_path, "scorer", "1.0.0"))
    engine, _sink = plane(installs, loads)

    async def scenario() -> None:
        await engine.reconfigure([infer_pipeline("score", "scorer@1.0.0")])
        await engine.reconfigure([infer_pipeline("score", "scorer@1.0.0", window=False)])
        await engine.reconfigure([infer_pipeline("renamed", "scorer@1.0.0")])

    asyncio.run(scenario())
    assert len(loads.files) == 1
    asyncio.run(engine.reconfigure([PLAIN]))
    assert engine.models.loaded() == []


def test_a_pipeline_whose_model_does_not_load_is_reported_and_the_others_run(
    tmp_path: Path,
) -> None:
    engine, sink = plane(Installs())  # nothing installed

    async def scenario() -> PipelinesFailedError:
        with pytest.raises(PipelinesFailedError) as caught:
            await engine.reconfigure([infer_pipeline("score", "scorer@1.0.0"), PLAIN])
        await engine.on_http_records([{"x": 1}])
        return caught.value

    error = asyncio.run(scenario())
    assert sorted(engine.pipelines) == ["plain"]
    assert list(error.failures) == ["score"] and error.kept == []
    assert str(error).startswith(
        "pipeline 'score' is not running: step 'model': model 'scorer@1.0.0/model.onnx': "
        "release scorer@1.0.0 is not installed on this node"
    )
    assert streams(sink, "raw") == [{"x": 1}]


def test_a_failed_model_change_keeps_the_previous_version_running(tmp_path: Path) -> None:
    installs = Installs()
    installs.add("scorer", "1.0.0", model_release(tmp_path, "scorer", "1.0.0"))
    engine, sink = plane(installs)

    async def scenario() -> PipelinesFailedError:
        await engine.reconfigure([infer_pipeline("score", "scorer@1.0.0")])
        with pytest.raises(PipelinesFailedError) as caught:
            await engine.reconfigure([infer_pipeline("score", "scorer@9.0.0")])
        await engine.on_http_records([{"x": 1, "ts": 1}])
        return caught.value

    error = asyncio.run(scenario())
    assert error.kept == ["score"]
    assert "pipeline 'score' keeps its previous version: " in str(error)
    assert [r["y"] for r in streams(sink, "scores")] == [3.0]
    assert engine.models.loaded() == ["scorer@1.0.0/model.onnx"]


def test_an_invalid_pipeline_is_reported_by_name_and_the_others_run() -> None:
    engine, _sink = plane(Installs())
    bad = {"name": "bad", "source": {"http": {}}, "outputs": [{"uplink": {}}]}
    with pytest.raises(PipelinesFailedError) as caught:
        engine.configure([bad, PLAIN])
    assert sorted(engine.pipelines) == ["plain"]
    assert str(caught.value).startswith("pipeline 'bad' is not running: outputs[0].uplink.stream")


def test_without_onnxruntime_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installs = Installs()
    installs.add("scorer", "1.0.0", model_release(tmp_path, "scorer", "1.0.0"))
    engine = DataPlane(
        MemoryPublisher(),
        MemoryRecordSink(),
        MemoryWebhookCaller(),
        models=ModelSessions(InstalledModels(installs)),  # the real onnxruntime loader
    )
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    with pytest.raises(PipelinesFailedError) as caught:
        asyncio.run(engine.reconfigure([infer_pipeline("score", "scorer@1.0.0"), PLAIN]))
    assert caught.value.failures == {
        "score": "step 'model': model 'scorer@1.0.0/model.onnx': "
        "onnxruntime is not installed (pip install 'fogline[ml]')"
    }
    assert sorted(engine.pipelines) == ["plain"]
