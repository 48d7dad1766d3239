"""The launcher's pointer file: round trips, refusals, and the switch/confirm/revert rules."""

import json
from pathlib import Path

import pytest

from fogline.launcher import (
    BUILTIN,
    Pointer,
    PointerError,
    Slot,
    Trial,
    confirm,
    load_pointer,
    request_switch,
    revert,
    save_pointer,
)

OLD = Slot("0.1.0-aaaaaaaaaaaa", "/node/slots/old", "0.1.0", "sha256:" + "a" * 64)
NEW = Slot("0.2.0-bbbbbbbbbbbb", "/node/slots/new", "0.2.0", "sha256:" + "b" * 64)


def test_no_pointer_file_means_the_builtin_agent(tmp_path: Path) -> None:
    pointer = load_pointer(tmp_path / "pointer.json", builtin_version="0.1.0")
    assert pointer == Pointer(Slot(BUILTIN, None, "0.1.0"))
    assert pointer.current.is_builtin


def test_a_switch_keeps_the_running_agent_as_previous_and_starts_a_trial(tmp_path: Path) -> None:
    path = tmp_path / "pointer.json"
    save_pointer(path, revert(Pointer(NEW, OLD), "exited", builtin_version="0.1.0"))
    assert load_pointer(path, builtin_version="0.1.0").failed is not None
    request_switch(path, OLD, NEW, builtin_version="0.1.0")
    pointer = load_pointer(path, builtin_version="0.1.0")
    # The old failure is gone with the switch: it must not undo this release later.
    assert pointer == Pointer(NEW, OLD, Trial(0), None)
    assert path.stat().st_mode & 0o777 == 0o600


def test_only_the_agent_on_trial_can_confirm_it(tmp_path: Path) -> None:
    path = tmp_path / "pointer.json"
    request_switch(path, OLD, NEW, builtin_version="0.1.0")
    assert not confirm(path, OLD.name, builtin_version="0.1.0")
    assert load_pointer(path, builtin_version="0.1.0").trial == Trial(0)
    assert confirm(path, NEW.name, builtin_version="0.1.0")
    assert load_pointer(path, builtin_version="0.1.0") == Pointer(NEW, OLD)
    assert not confirm(path, NEW.name, builtin_version="0.1.0")  # once


def test_revert_goes_back_to_previous_and_says_why() -> None:
    back = revert(Pointer(NEW, OLD, Trial(1)), "exited with code 3", builtin_version="0.1.0")
    assert back.current == OLD and back.previous is None and back.trial is None
    assert back.failed is not None
    assert back.failed.slot == NEW and back.failed.reason == "exited with code 3"


def test_revert_with_nothing_to_go_back_to_runs_the_builtin_agent() -> None:
    back = revert(Pointer(NEW, None, Trial(1)), "missing", builtin_version="0.1.0")
    assert back.current == Slot(BUILTIN, None, "0.1.0")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not a pointer"),
        ('{"format": 2}', "format 1"),
        (json.dumps({"format": 1, "current": {"name": "x", "path": "rel", "version": "1"}}), "rel"),
        (json.dumps({"format": 1, "current": {"name": "../x", "path": None, "version": "1"}}), "x"),
        ("x" * 70_000, "larger than"),
    ],
)
def test_a_malformed_pointer_is_refused_with_the_reason(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "pointer.json"
    path.write_text(text)
    with pytest.raises(PointerError, match=reason) as caught:
        load_pointer(path, builtin_version="0.1.0")
    assert str(path) in str(caught.value)
