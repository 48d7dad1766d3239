"""With a TUF root pinned, TUF metadata alone decides which bytes a release is:
asked before anything is downloaded, the download bounded by the signed
length, the bytes checked against the signed sha256; release keys grant nothing."""

import asyncio
from dataclasses import replace

from fogline.agent.updater import MemoryTargetTrust, State, TrustedTarget
from fogline.artifact import generate_release_key

from ._support import NAME, MakeNode, Release


def _signed(*releases: Release, length: int | None = None) -> MemoryTargetTrust:
    return MemoryTargetTrust(
        {(NAME, r.version): TrustedTarget(length or len(r.blob), r.target.digest) for r in releases}
    )


def test_a_release_tuf_signs_installs_and_tuf_was_asked_before_the_fetch(
    make_node: MakeNode, releases: dict[str, Release]
) -> None:
    v1 = releases["1.0.0"]
    node = make_node(v1)
    node.tuf = trust = _signed(v1)
    # The release's own .sig is by a key nobody trusts: TUF alone vouches.
    node.key = generate_release_key()
    result = asyncio.run(node.updater().ensure(v1.target))
    assert result.ok, result
    assert trust.lookups == [(NAME, "1.0.0")]
    assert node.activator.running == {NAME: "1.0.0"}


def test_a_release_missing_from_tuf_is_refused_before_any_byte_and_not_recorded(
    make_node: MakeNode, releases: dict[str, Release]
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    node = make_node(v1, v2)
    node.tuf = _signed(v1)
    updater = node.updater()
    assert asyncio.run(updater.ensure(v1.target)).ok
    node.source.fetches.clear()
    # Signed by a key the node trusts (the old rule would install it).
    result = asyncio.run(updater.ensure(v2.target))
    assert result.state is State.FAILED and result.failed_in is State.DOWNLOAD
    assert result.error is not None and "TUF refused demo/2.0.0" in result.error
    assert result.retryable and updater.failure(NAME) is None  # applies once signed
    assert node.source.fetches == []
    assert node.activator.running == {NAME: "1.0.0"}


def test_a_desired_state_naming_other_bytes_than_tuf_signs_is_refused(
    make_node: MakeNode, releases: dict[str, Release]
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    node = make_node(v1, v2)
    node.tuf = _signed(v1)
    # Mix and match: v1's name and version with v2's bytes.
    target = replace(v2.target, version="1.0.0")
    result = asyncio.run(node.updater().ensure(target))
    assert result.state is State.FAILED
    assert result.error is not None and "TUF metadata signs" in result.error
    assert node.source.fetches == [] and node.activator.running == {}


def test_endless_data_stops_at_the_signed_length(
    make_node: MakeNode, releases: dict[str, Release]
) -> None:
    v1 = releases["1.0.0"]
    node = make_node(v1)
    node.tuf = _signed(v1, length=1000)  # the hub serves far more than signed
    result = asyncio.run(node.updater().ensure(v1.target))
    assert result.state is State.FAILED and result.failed_in is State.DOWNLOAD
    assert result.error is not None and "exceeds 1000 bytes" in result.error
    assert node.activator.running == {}
    assert not any((node.root / "downloads").iterdir())
