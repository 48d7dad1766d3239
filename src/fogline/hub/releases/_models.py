"""Model releases named by `infer` steps: the deployment that runs a model delivers it.

An infer step names `model: {release: NAME@VERSION, file: PATH}` and the node
loads that file from its install of the release; a node installs only the
releases its desired state lists under `modules`. So at plan/apply the hub
checks that the Deployment holding the pipeline lists that same release
under its own `spec.modules`, and that the release is a `kind: model`
release. It checks and never adds the entry itself: the module entry is what
rollouts, downgrade rules and the audit log follow, and the operator should
see it in the file, not find it in the compiled state.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fogline.artifact import ArtifactError, read_module_spec_from_archive
from fogline.manifest import ManifestError, Origin, Problem

from ._artifacts import ArtifactStore

ReleaseKind = Callable[[str], str | None]  # digest -> kind, None when unknown


def archive_kind(artifacts_dir: Path | None) -> ReleaseKind:
    """The `kind` of a pushed release, read from its archive's module file.

    Only the first entry is read (at most 64 KiB). None when the hub has no
    store or the archive cannot be read: the node checks the kind again.
    """
    store = ArtifactStore(artifacts_dir) if artifacts_dir is not None else None
    seen: dict[str, str | None] = {}

    def kind(digest: str) -> str | None:
        if store is None:
            return None
        if digest not in seen:
            try:
                seen[digest] = read_module_spec_from_archive(store.path_for(digest)).kind
            except (ArtifactError, OSError, ValueError):
                seen[digest] = None
        return seen[digest]

    return kind


def check_model_refs(
    deployment_document: Mapping[str, Any],
    *,
    origin: Origin | None = None,
    release_kind: ReleaseKind,
) -> None:
    """Every infer step's model release is one of the deployment's modules, a model.

    `deployment_document` has its module references resolved (each entry
    carries `version` and `digest`, see `resolve_module_refs`); its pipelines
    are valid. `origin` places the problems in the operator's file.

    Raises:
        ManifestError: one Problem per infer step whose release the deployment
            does not deliver, delivers at another version, or is not a model,
            at `spec.pipelines[i].steps[j].infer.model.release`.
    """
    spec = deployment_document.get("spec")
    if not isinstance(spec, Mapping):
        return
    delivered = {
        str(entry.get("name")): (index, entry)
        for index, entry in enumerate(spec.get("modules") or ())
        if isinstance(entry, Mapping)
    }
    name = deployment_document.get("metadata", {}).get("name", "?")
    file = origin.file if origin else f"deployment/{name}"
    line, column = (origin.line, origin.column) if origin else (None, None)
    problems: list[Problem] = []
    for i, pipeline in enumerate(spec.get("pipelines") or ()):
        steps = pipeline.get("steps") if isinstance(pipeline, Mapping) else None
        for j, step in enumerate(steps or ()):
            infer = step.get("infer") if isinstance(step, Mapping) else None
            if not isinstance(infer, Mapping) or not isinstance(infer.get("model"), Mapping):
                continue
            release = str(infer["model"].get("release"))
            reason = _problem(release, delivered, release_kind)
            if reason is not None:
                path = f"spec.pipelines[{i}].steps[{j}].infer.model.release"
                problems.append(Problem(file, line, column, path, reason))
    if problems:
        raise ManifestError(problems)


def _problem(
    release: str, delivered: Mapping[str, tuple[int, Mapping[str, Any]]], release_kind: ReleaseKind
) -> str | None:
    module, _, version = release.partition("@")
    found = delivered.get(module)
    if found is None:
        return (
            f"model release {release} is not delivered by this deployment: add "
            f"{{name: {module}, release: {release}}} to its spec.modules"
        )
    index, entry = found
    if entry.get("version") != version:
        return (
            f"this deployment delivers {module} {entry.get('version')} (spec.modules[{index}]), "
            f"but the step loads {release}: name the same version in both"
        )
    kind = release_kind(str(entry.get("digest")))
    if kind is not None and kind != "model":
        return (
            f"release {release} is kind {kind!r}; an infer step loads a release whose "
            "fogline-module.yaml says kind: model"
        )
    return None
