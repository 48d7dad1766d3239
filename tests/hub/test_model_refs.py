"""At plan/apply, the deployment that runs a model delivers its release, a model."""

import base64
import textwrap
from pathlib import Path
from typing import Any

import pytest

from fogline.artifact import build_release, generate_release_key, public_key_base64, sign_release
from fogline.hub.releases import check_model_refs
from fogline.manifest import ManifestError, Origin

INFER = {
    "id": "model",
    "infer": {"model": {"release": "scorer@1.0.0"}, "inputs": ["x"], "output": "y"},
}


def document(modules: list[dict[str, Any]]) -> dict[str, Any]:
    """A Deployment document as `resolve_module_refs` leaves it."""
    pipeline = {
        "name": "score",
        "source": {"http": {}},
        "steps": [{"id": "f", "filter": "x > 0"}, INFER],
        "outputs": [{"uplink": {"stream": "s"}}],
    }
    return {
        "apiVersion": "fogline.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "scoring"},
        "spec": {"selector": {}, "modules": modules, "pipelines": [pipeline]},
    }


def scorer(version: str, digest: str = "sha256:" + "a" * 64) -> dict[str, Any]:
    return {
        "name": "scorer",
        "release": f"scorer@{version}",
        "version": version,
        "digest": digest,
    }


def kinds(kind: str | None) -> Any:
    return lambda digest: kind


def test_a_model_the_deployment_delivers_at_the_same_version_passes() -> None:
    check_model_refs(document([scorer("1.0.0")]), release_kind=kinds("model"))
    check_model_refs(document([scorer("1.0.0")]), release_kind=kinds(None))  # kind unknown


@pytest.mark.parametrize(
    ("modules", "kind", "reason"),
    [
        (
            [],
            "model",
            "model release scorer@1.0.0 is not delivered by this deployment: add "
            "{name: scorer, release: scorer@1.0.0} to its spec.modules",
        ),
        (
            [scorer("2.0.0")],
            "model",
            "this deployment delivers scorer 2.0.0 (spec.modules[0]), but the step loads "
            "scorer@1.0.0: name the same version in both",
        ),
        (
            [scorer("1.0.0")],
            "service",
            "release scorer@1.0.0 is kind 'service'; an infer step loads a release whose "
            "fogline-module.yaml says kind: model",
        ),
    ],
)
def test_a_model_not_delivered_as_a_model_is_refused_at_the_step(
    modules: list[dict[str, Any]], kind: str, reason: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        check_model_refs(
            document(modules), origin=Origin("fleet.yaml", 3, 1), release_kind=kinds(kind)
        )
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.path) == (
        "fleet.yaml",
        3,
        "spec.pipelines[0].steps[1].infer.model.release",
    )
    assert problem.reason == reason


# -- a real hub reads the kind from the pushed archive -------------------------------------


def push(hub: Any, tmp_path: Path, key: Any, name: str, kind: str) -> None:
    source = tmp_path / f"src-{name}"
    source.mkdir()
    (source / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: 1.0.0\nkind: {kind}\narchitectures: [any]\n"
    )
    (source / "model.onnx").write_bytes(b"not looked at by the hub")
    archive = tmp_path / f"{name}.tar.zst"
    build_release(source, archive)
    envelope = sign_release(archive, key)
    with hub.client() as client:
        response = client.post(
            "/v1/releases",
            content=archive.read_bytes(),
            headers={"x-fogline-signature": base64.b64encode(envelope.to_json()).decode()},
        )
    assert response.status_code == 201, response.text


def plan(hub: Any, release: str, module: str | None) -> Any:
    modules = f"modules: [{{name: {module}, release: {module}@1.0.0}}]" if module else ""
    text = textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: scoring}}
        spec:
          selector: {{}}
          {modules}
          pipelines:
            - name: score
              source: {{http: {{}}}}
              steps:
                - id: model
                  infer: {{model: {{release: {release}}}, inputs: [x], output: y}}
              outputs: [{{uplink: {{stream: s}}}}]
        """)
    with hub.client() as client:
        return client.post(
            "/v1/manifests/plan", json={"files": [{"name": "fleet.yaml", "text": text}]}
        )


def test_plan_checks_the_model_release_against_the_pushed_archive(
    shared_hub: Any, tmp_path: Path
) -> None:
    key = generate_release_key()
    trust = textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: ReleaseKey
        metadata: {{name: model-refs}}
        spec: {{publicKey: {public_key_base64(key.public_key)}}}
        """)
    with shared_hub.client() as client:
        applied = client.post(
            "/v1/manifests/apply", json={"files": [{"name": "key.yaml", "text": trust}]}
        )
        assert applied.status_code == 200, applied.text
    push(shared_hub, tmp_path, key, "scorer", "model")
    push(shared_hub, tmp_path, key, "settings", "config")

    assert plan(shared_hub, "scorer@1.0.0", "scorer").status_code == 200
    for release, module, reason in [
        ("settings@1.0.0", "settings", "release settings@1.0.0 is kind 'config'"),
        ("scorer@1.0.0", None, "model release scorer@1.0.0 is not delivered by this deployment"),
    ]:
        refused = plan(shared_hub, release, module)
        assert refused.status_code == 422, refused.text
        (detail,) = refused.json()["details"]
        assert detail["field"] == "fleet.yaml:1:1 spec.pipelines[0].steps[0].infer.model.release"
        assert detail["reason"].startswith(reason)
