"""Hostile or wrong releases are refused in the right state, the running
version keeps running, and the failure is reported truthfully."""

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from fogline.agent.modules import scopes_from
from fogline.agent.updater import ActivatorCall, MemoryActivator, State, Updater, UpdateResult
from fogline.agent.updater._verify import check_signature
from fogline.artifact import (
    ReleaseKeyPair,
    UntrustedReleaseError,
    generate_release_key,
    public_key_base64,
    sign_release,
)
from fogline.protocol import KeyScope

from ._support import (
    NAME,
    MakeNode,
    Node,
    Release,
    hostile_release,
    make_release,
    no_sleep,
    serve,
    trusted,
)


@pytest.fixture
def on_v1(node: Node, releases: dict[str, Release]) -> Node:
    """A node running 1.0.0, its activator calls and reports cleared."""
    assert asyncio.run(node.updater().ensure(releases["1.0.0"].target)).ok
    node.activator.calls.clear()
    node.reports.clear()
    node.source.fetches.clear()
    return node


def _refused(node: Node, result: UpdateResult, state: State, words: str) -> None:
    assert result.state is State.FAILED and result.failed_in is state, result
    assert not result.retryable
    assert result.error is not None and words in result.error, result.error
    # v1 was never stopped: a refusal happens before ACTIVATE.
    assert node.activator.running == {NAME: "1.0.0"}
    assert ActivatorCall("stop", NAME) not in node.activator.calls
    assert node.reports[-1].state is State.FAILED and node.reports[-1].error == result.error
    assert state in node.states() and State.ACTIVATE not in node.states()
    # Nothing of the refused release stays on disk.
    assert list((node.root / "downloads").iterdir()) == []
    installs = {p.name for p in node.module_dir().iterdir()} - {"current", "previous"}
    assert len(installs) == 1
    failure = node.updater().failure(NAME)
    assert failure is not None and failure.reason == result.error


def test_a_tampered_archive_is_refused_at_the_digest_check(
    on_v1: Node, releases: dict[str, Release]
) -> None:
    v2 = releases["2.0.0"]
    tampered = bytearray(v2.blob)
    tampered[len(tampered) // 2] ^= 0x01
    on_v1.source.blobs[v2.target.digest] = bytes(tampered)
    result = asyncio.run(on_v1.updater().ensure(v2.target))
    _refused(on_v1, result, State.DOWNLOAD, "digest mismatch")


def test_a_release_signed_by_an_untrusted_key_is_refused_at_verify(
    on_v1: Node, tmp_path: Path
) -> None:
    stranger = generate_release_key()
    rogue = make_release(tmp_path / "rogue", "2.0.0", stranger)
    on_v1.source.blobs[rogue.target.digest] = rogue.blob
    result = asyncio.run(on_v1.updater().ensure(rogue.target))
    _refused(on_v1, result, State.VERIFY, "not a trusted key")
    # The bytes are refused whatever they would run with: another config
    # does not fetch them again.
    fetches = len(on_v1.source.fetches)
    other = replace(rogue.target, config={"another": "config"})
    again = asyncio.run(on_v1.updater().ensure(other))
    assert again.remembered and len(on_v1.source.fetches) == fetches


def test_a_release_without_a_signature_is_refused_at_verify(
    on_v1: Node, releases: dict[str, Release]
) -> None:
    unsigned = replace(releases["2.0.0"].target, signature=b"")
    result = asyncio.run(on_v1.updater().ensure(unsigned))
    _refused(on_v1, result, State.VERIFY, "malformed signature envelope")


def test_a_signature_for_another_version_is_refused_at_verify(
    on_v1: Node, releases: dict[str, Release], tmp_path: Path, key: ReleaseKeyPair
) -> None:
    # A validly signed 2.0.0 offered as 4.0.0 (the bytes and digest are 2.0.0's).
    v2 = releases["2.0.0"]
    posing = replace(v2.target, version="4.0.0")
    result = asyncio.run(on_v1.updater().ensure(posing))
    _refused(on_v1, result, State.VERIFY, "expected 4.0.0")


def test_an_old_signature_cannot_vouch_for_new_bytes(
    on_v1: Node, releases: dict[str, Release]
) -> None:
    # 2.0.0's bytes with 1.0.0's (valid) envelope: the signed digest differs.
    v2 = releases["2.0.0"]
    mixed = replace(v2.target, signature=releases["1.0.0"].target.signature)
    result = asyncio.run(on_v1.updater().ensure(mixed))
    _refused(on_v1, result, State.VERIFY, "digest mismatch")


@pytest.mark.parametrize("evil", ["../../../evil", "/tmp/fogline-evil-abs"])
def test_a_path_traversal_archive_is_refused_at_install(
    on_v1: Node, tmp_path: Path, key: ReleaseKeyPair, evil: str
) -> None:
    hostile = hostile_release(tmp_path / "h", "2.0.0", key, evil)
    on_v1.source.blobs[hostile.target.digest] = hostile.blob
    result = asyncio.run(on_v1.updater().ensure(hostile.target))
    _refused(on_v1, result, State.INSTALL, "evil")
    assert not (tmp_path / "evil").exists() and not Path("/tmp/fogline-evil-abs").exists()
    assert not any(p.name == "evil" for p in on_v1.root.rglob("*"))


def test_a_release_for_another_architecture_is_refused_before_unpacking(
    make_node: MakeNode,
    releases: dict[str, Release],
    tmp_path: Path,
    key: ReleaseKeyPair,
) -> None:
    arm = make_release(tmp_path / "arm", "2.0.0", key, arch="aarch64")
    node = make_node(releases["1.0.0"], arm, machine="x86_64")
    assert asyncio.run(node.updater().ensure(releases["1.0.0"].target)).ok
    node.activator.calls.clear()
    node.reports.clear()
    result = asyncio.run(node.updater().ensure(arm.target))
    _refused(node, result, State.INSTALL, "this node is x86_64")


def test_an_archive_over_the_announced_size_is_cut_off(
    on_v1: Node, releases: dict[str, Release]
) -> None:
    v2 = releases["2.0.0"]
    small = replace(v2.target, size=len(v2.blob) // 2)
    on_v1.source.chunk_bytes = 1024
    result = asyncio.run(on_v1.updater().ensure(small))
    _refused(on_v1, result, State.DOWNLOAD, "exceeds")
    # It stopped at the limit instead of fetching everything.
    assert len(on_v1.source.fetches) == 1


def test_an_archive_whose_module_file_names_another_module_is_refused(
    make_node: MakeNode,
    releases: dict[str, Release],
    tmp_path: Path,
    key: ReleaseKeyPair,
) -> None:
    # Signed as "other", so the signature check refuses it for "demo".
    other = make_release(tmp_path / "o", "2.0.0", key, name="other")
    posing = replace(other.target, name=NAME)
    node = make_node(releases["1.0.0"], other)
    assert asyncio.run(node.updater().ensure(releases["1.0.0"].target)).ok
    node.activator.calls.clear()
    node.reports.clear()
    result = asyncio.run(node.updater().ensure(posing))
    _refused(node, result, State.VERIFY, "expected 'demo'")


def test_resigning_with_a_trusted_key_is_required_for_rotation(
    on_v1: Node, tmp_path: Path, key: ReleaseKeyPair
) -> None:
    # The same archive re-signed by the trusted key passes: the key, not the file, matters.
    rogue = make_release(tmp_path / "r", "2.0.0", generate_release_key())
    envelope = sign_release(rogue.archive, key)
    on_v1.source.blobs[rogue.target.digest] = rogue.blob
    fixed = replace(rogue.target, signature=envelope.to_json())
    assert asyncio.run(on_v1.updater().ensure(fixed)).ok
    assert on_v1.activator.running == {NAME: "2.0.0"}


def test_unknown_artifacts_fail_retryably_and_are_not_recorded(
    on_v1: Node, tmp_path: Path, key: ReleaseKeyPair
) -> None:
    missing = make_release(tmp_path / "m", "5.0.0", key)  # never served
    result = asyncio.run(on_v1.updater().ensure(missing.target))
    assert result.failed_in is State.DOWNLOAD and result.retryable
    assert "HTTP 404" in (result.error or "")
    assert on_v1.updater().failure(NAME) is None
    assert on_v1.activator.running == {NAME: "1.0.0"}
    assert on_v1.source.fetches == [(missing.target.digest, 0)]  # 404 is not retried
    # Once the hub has it, the same release goes through.
    on_v1.source.blobs[missing.target.digest] = missing.blob
    assert asyncio.run(on_v1.updater().ensure(missing.target)).ok


def test_a_memory_activator_unknown_to_the_test_is_fine() -> None:
    # Guard against fixtures drifting: the refusal helper relies on these defaults.
    assert MemoryActivator().health == {} and serve().blobs == {}


# -- key scopes: the node enforces them too -----------------------------------------------


def test_a_key_whose_scope_does_not_cover_the_module_is_refused(
    tmp_path: Path, key: ReleaseKeyPair, releases: dict[str, Release]
) -> None:
    release = releases["1.0.0"]
    with pytest.raises(UntrustedReleaseError, match=r"may sign only modules matching \[web-\*\]"):
        check_signature(
            release.target,
            release.target.digest,
            {key.key_id: key.public_key},
            {key.key_id: KeyScope.of(["web-*"])},
        )
    verified = check_signature(
        release.target,
        release.target.digest,
        {key.key_id: key.public_key},
        {key.key_id: KeyScope.of(["de*"])},
    )
    assert verified.name == "demo"


def test_the_updater_refuses_an_out_of_scope_release_and_installs_nothing(
    tmp_path: Path, key: ReleaseKeyPair, releases: dict[str, Release]
) -> None:
    release = releases["1.0.0"]
    activator = MemoryActivator()
    up = Updater(
        tmp_path / "node",
        source=serve(release),
        activator=activator,
        trusted_keys=trusted(key),
        key_scopes=lambda: {key.key_id: KeyScope.of(["web-*"])},
        sleep=no_sleep,
    )
    result = asyncio.run(up.ensure(release.target))
    assert result.state is State.FAILED and result.failed_in is State.VERIFY
    assert result.error is not None and "may sign only modules matching [web-*]" in result.error
    assert activator.running == {} and up.installed("demo") is None


def test_pinned_and_desired_scopes_combine_so_the_desired_state_cannot_widen() -> None:
    pair = generate_release_key()
    b64 = public_key_base64(pair.public_key)
    pinned = ({"ci": b64}, {"ci": ("web-*",)})
    unscoped_in_desired = ({"ci": b64}, {})
    scopes = scopes_from([pinned, unscoped_in_desired])
    assert not scopes[pair.key_id].covers("billing")
    assert scopes[pair.key_id].covers("web-api")
    # A key only the desired state lists takes the desired state's scope.
    assert scopes_from([({}, {}), ({"ci": b64}, {"ci": ("gw",)})])[pair.key_id].covers("gw")
    # The desired state may narrow a pinned key.
    narrowed = scopes_from([({"ci": b64}, {}), ({"ci": b64}, {"ci": ("gw",)})])
    assert not narrowed[pair.key_id].covers("web-api")
