"""The updater's state on disk: per module a journal, the installed record
and the failure record, each one small JSON file replaced atomically.

    <root>/state/<module>/journal.json    the update in flight (or the last one)
    <root>/state/<module>/installed.json  the committed version: what runs after a restart
    <root>/state/<module>/failed.json     a release that failed; not retried by itself
    <root>/state/<module>/spec.json       the parsed module file of an install (a copy:
                                          see fogline.artifact.load_module_spec_cached)

`save_journal` counts the saves of one update: a crash loop shows up as a
count that keeps growing without the journal reaching DONE.
"""

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from fogline._durable import fsync_dir, write_atomic

from ._errors import InvalidTargetError, JournalCorruptError
from ._models import InstalledRelease, ReleaseFailure, ReleaseTarget
from ._states import State

JOURNAL_FORMAT: Final = 1
_MAX_STATE_FILE_BYTES: Final = 1 << 20  # a target is at most ~300 KiB of JSON
_MODE: Final = 0o600  # targets may carry configuration secrets
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Journal:
    """One update in flight: enough to resume or undo it after a crash.

    `state` is a string so that a journal written by a newer agent, naming a
    state this one does not know, still loads (and rolls back). `prior` and
    `prior_previous` are what ran before, so ROLLBACK can restore exactly it.
    """

    state: str
    saves: int
    target: ReleaseTarget
    prior: InstalledRelease | None
    prior_previous: str | None
    error: str | None = None
    failed_in: str | None = None
    retryable: bool = False
    interrupted: bool = False  # ended because the agent stopped mid-update

    @property
    def is_terminal(self) -> bool:
        return self.state in (State.DONE, State.FAILED)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": JOURNAL_FORMAT,
            "state": self.state,
            "saves": self.saves,
            "target": self.target.to_json(),
            "prior": _installed_to_json(self.prior),
            "prior_previous": self.prior_previous,
            "error": self.error,
            "failed_in": self.failed_in,
            "retryable": self.retryable,
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Journal":
        if data.get("format") != JOURNAL_FORMAT:
            raise ValueError(f"unknown journal format {data.get('format')!r}")
        prior_previous = data.get("prior_previous")
        if prior_previous is not None:
            prior_previous = _check_dir_name(prior_previous)
        return cls(
            state=str(data["state"]),
            saves=int(data["saves"]),
            target=ReleaseTarget.from_json(data["target"]),
            prior=_installed_from_json(data.get("prior")),
            prior_previous=prior_previous,
            error=_opt_str(data.get("error")),
            failed_in=_opt_str(data.get("failed_in")),
            retryable=bool(data.get("retryable", False)),
            interrupted=bool(data.get("interrupted", False)),
        )


class StateFiles:
    """Reads and writes the three state files of each module under `<root>/state/`."""

    def __init__(self, root: Path) -> None:
        self._root = root / "state"

    def module_names(self) -> list[str]:
        if not self._root.is_dir():
            return []
        return sorted(p.name for p in self._root.iterdir() if p.is_dir())

    def load_journal(self, module: str) -> Journal | None:
        return self._load(module, "journal.json", Journal.from_json)

    def save_journal(self, journal: Journal, **changes: Any) -> Journal:
        """Write `journal` with `changes` applied and its save count bumped; return it."""
        saved = dataclasses.replace(journal, **changes, saves=journal.saves + 1)
        self._write(saved.target.name, "journal.json", saved.to_json())
        return saved

    def set_aside_journal(self, module: str) -> None:
        """Keep an unreadable journal for inspection and carry on without it."""
        path = self._path(module, "journal.json")
        if path.exists():
            os.replace(path, path.with_name("journal.corrupt.json"))

    def load_installed(self, module: str) -> InstalledRelease | None:
        return self._load(module, "installed.json", _installed)

    def save_installed(self, module: str, installed: InstalledRelease | None) -> None:
        if installed is None:
            self._unlink(module, "installed.json")
        else:
            data = {"target": installed.target.to_json(), "install_dir": installed.install_dir}
            self._write(module, "installed.json", data)

    def load_failure(self, module: str) -> ReleaseFailure | None:
        def parse(data: dict[str, Any]) -> ReleaseFailure:
            return ReleaseFailure(
                module=str(data["module"]),
                version=str(data["version"]),
                digest=str(data["digest"]),
                reason=str(data["reason"]),
                failed_in=State(data["failed_in"]),
                at_s=float(data["at_s"]),
                # Records from before it hold for the release, whatever its config.
                deployment=None if data.get("deployment") is None else str(data["deployment"]),
            )

        return self._load(module, "failed.json", parse)

    def save_failure(self, failure: ReleaseFailure) -> None:
        data = dataclasses.asdict(failure)
        self._write(failure.module, "failed.json", data)

    def clear_failure(self, module: str) -> bool:
        return self._unlink(module, "failed.json")

    def spec_cache(self, module: str) -> Path:
        """Where the parsed module file of `module`'s installs is kept."""
        return self._path(module, "spec.json")

    def _path(self, module: str, name: str) -> Path:
        return self._root / module / name

    def _load(self, module: str, name: str, parse: Callable[[dict[str, Any]], _T]) -> _T | None:
        path = self._path(module, name)
        try:
            with path.open("rb") as fh:
                raw = fh.read(_MAX_STATE_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(raw) > _MAX_STATE_FILE_BYTES:
            raise JournalCorruptError(str(path), f"larger than {_MAX_STATE_FILE_BYTES} bytes")
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return parse(data)
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, InvalidTargetError) as exc:
            raise JournalCorruptError(str(path), f"unreadable: {exc}") from exc

    def _write(self, module: str, name: str, data: dict[str, Any]) -> None:
        write_atomic(self._path(module, name), orjson.dumps(data), mode=_MODE)

    def _unlink(self, module: str, name: str) -> bool:
        path = self._path(module, name)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True


def _installed_to_json(installed: InstalledRelease | None) -> dict[str, Any] | None:
    if installed is None:
        return None
    return {"target": installed.target.to_json(), "install_dir": installed.install_dir}


def _installed_from_json(data: Any) -> InstalledRelease | None:
    return None if data is None else _installed(data)


def _installed(data: dict[str, Any]) -> InstalledRelease:
    return InstalledRelease(
        target=ReleaseTarget.from_json(data["target"]),
        install_dir=_check_dir_name(data["install_dir"]),
    )


def _check_dir_name(value: object) -> str:
    # A state file names directories under modules/<name>/; never a path.
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise ValueError(f"bad install directory name {str(value)[:80]!r}")
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
