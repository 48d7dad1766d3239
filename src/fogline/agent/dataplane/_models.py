"""The models of `infer` steps on the node: files of installed `kind: model` releases.

An infer step names `model: {release: NAME@VERSION, file: PATH}`. The release
reaches the node like any module (its deployment lists it under `modules`):
the updater verifies it and installs it side by side, and the supervisor runs
nothing. `InstalledModels` finds the step's file in that install;
`ModelSessions` loads it with onnxruntime in a worker thread, so the event
loop that carries local actions never waits for a model to load, and keeps
the sessions the running pipelines use. The pipelines themselves are then
swapped on the loop, between two batches (`DataPlane.reconfigure`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fogline.artifact import MODULE_FILE, ArtifactError, load_module_spec

from ..updater import InstalledRelease

if TYPE_CHECKING:
    from fogline.pipeline import InferenceSessionLike, ModelRefSpec

# (release, file): versions are immutable once pushed, so this names the same
# bytes for as long as the hub keeps its promise (and the digest was verified).
ModelKey = tuple[str, str]
ModelFileLoader = Callable[[Path], "InferenceSessionLike"]


class InstalledReleases(Protocol):
    """What model lookup needs of the updater (`fogline.agent.updater.Updater`)."""

    def installed(self, name: str) -> InstalledRelease | None:
        """The committed release of `name`, or None."""

    def install_path(self, name: str) -> Path | None:
        """The directory `name` is installed in, or None."""


class ModelSource(Protocol):
    def model_path(self, ref: ModelRefSpec) -> Path:
        """The file `ref` names, on this node.

        Raises:
            ModelLoadError: the release is not installed at that version, is
                not a model, or has no such file.
        """


def _key(ref: ModelRefSpec) -> ModelKey:
    return (ref.release, ref.file)


class InstalledModels:
    """ModelSource over the updater's installs: `<install>/<file>` of the
    committed version, which must be the version the step names."""

    def __init__(self, releases: InstalledReleases) -> None:
        self.releases = releases

    def model_path(self, ref: ModelRefSpec) -> Path:
        from fogline.pipeline import ModelLoadError

        def refuse(reason: str) -> ModelLoadError:
            return ModelLoadError(None, str(ref), reason)

        deliver = f"the deployment must list {ref.release} under its modules"
        try:
            installed = self.releases.installed(ref.name)
            root = self.releases.install_path(ref.name)
        except Exception as exc:  # an unreadable installed.json: the updater's own error
            raise refuse(f"cannot read what is installed: {exc}") from exc
        if installed is None or root is None:
            raise refuse(f"release {ref.release} is not installed on this node; {deliver}")
        version = installed.target.version
        if version != ref.version:
            raise refuse(
                f"release {ref.release} is not installed on this node ({ref.name} {version} "
                f"is); {deliver}"
            )
        try:
            kind = load_module_spec(root / MODULE_FILE).kind
        except (ArtifactError, OSError) as exc:
            raise refuse(f"cannot read the release's {MODULE_FILE}: {exc}") from exc
        if kind != "model":
            raise refuse(
                f"release {ref.release} is kind {kind!r}; an infer step loads a release "
                "whose fogline-module.yaml says kind: model"
            )
        try:
            # The unpacker refused links leaving the release; resolving again
            # keeps that true whatever changed on disk since.
            real_root = root.resolve(strict=True)
            path = (root / ref.file).resolve(strict=True)
        except OSError:
            raise refuse(f"release {ref.release} has no file {ref.file!r}") from None
        if not path.is_relative_to(real_root) or not path.is_file():
            raise refuse(f"{ref.file!r} is not a file inside release {ref.release}")
        return path


class ModelSessions:
    """The `ModelLoader` of the node's pipelines: sessions of installed models.

    `prepare` loads, off the event loop, what the next configuration needs;
    the pipelines then ask for the sessions synchronously (`__call__`) while
    they are built on the loop. Sessions stay while a running pipeline uses
    them (`keep_only`), so a pipeline rebuilt for another change reuses its
    model instead of loading it again. Load failures are remembered only
    until the next `prepare`: a release installed later is tried again.
    """

    def __init__(self, source: ModelSource | None, load: ModelFileLoader | None = None) -> None:
        self.source = source
        self._load = load
        self._sessions: dict[ModelKey, InferenceSessionLike] = {}
        self._failures: dict[ModelKey, Exception] = {}

    async def prepare(self, refs: Iterable[ModelRefSpec]) -> None:
        """Load the models of `refs` not loaded yet, in a worker thread."""
        wanted = {_key(ref): ref for ref in refs}
        missing = [ref for key, ref in wanted.items() if key not in self._sessions]
        self._failures = {}
        if not missing:
            return
        loaded = await asyncio.to_thread(self._load_all, missing)
        for key, result in loaded.items():
            if isinstance(result, Exception):
                self._failures[key] = result
            else:
                self._sessions[key] = result

    def _load_all(
        self, refs: list[ModelRefSpec]
    ) -> dict[ModelKey, InferenceSessionLike | Exception]:
        results: dict[ModelKey, InferenceSessionLike | Exception] = {}
        for ref in refs:
            try:
                results[_key(ref)] = self._load_one(ref)
            except Exception as exc:  # reported for the pipeline that needs it
                results[_key(ref)] = exc
        return results

    def _load_one(self, ref: ModelRefSpec) -> InferenceSessionLike:
        from fogline.pipeline import ModelLoadError, load_onnx_model

        if self.source is None:
            raise ModelLoadError(None, str(ref), "this node has no installed releases to load from")
        path = self.source.model_path(ref)
        try:
            return (self._load or load_onnx_model)(path)
        except ModelLoadError as exc:
            # The loader names the file by its path; the operator wrote the reference.
            raise ModelLoadError(None, str(ref), exc.reason) from exc

    def __call__(self, ref: ModelRefSpec) -> InferenceSessionLike:
        """The session of `ref` (blocking: loads it here if `prepare` did not).

        Raises:
            ModelLoadError: as `InstalledModels.model_path`, or the file does
                not load (no onnxruntime, not a model).
        """
        key = _key(ref)
        session = self._sessions.get(key)
        if session is not None:
            return session
        failure = self._failures.get(key)
        if failure is not None:
            raise failure
        session = self._sessions[key] = self._load_one(ref)
        return session

    def keep_only(self, refs: Iterable[ModelRefSpec]) -> None:
        """Drop the sessions no running pipeline uses (their memory goes with
        the last step holding them)."""
        keep = {_key(ref) for ref in refs}
        self._sessions = {k: s for k, s in self._sessions.items() if k in keep}
        self._failures = {}

    def loaded(self) -> list[str]:
        """`release/file` of every session held, for logs and tests."""
        return sorted(f"{release}/{file}" for release, file in self._sessions)
