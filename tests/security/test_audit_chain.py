"""The audit hash chain, bytes in and verdict out: a whole chain holds; an
edited, deleted or reordered entry, or a cut tail, is named."""

import dataclasses

from fogline.security import GENESIS, ChainEntry, ChainVerifier, entry_hash, verify_chain


def _chain(count: int) -> list[ChainEntry]:
    entries, prev = [], GENESIS
    for seq in range(1, count + 1):
        fields = {
            "seq": seq,
            "at": f"2030-01-01T00:00:{seq:02d}.000000Z",
            "actor": "admin",
            "source": "127.0.0.1",
            "action": "claim.create",
            "target": f"c{seq}",
            "outcome": "ok",
            "detail": {"max_uses": seq, "labels": {"site": "a"}},
        }
        digest = entry_hash(**fields, prev_hash=prev)  # type: ignore[arg-type]
        entries.append(ChainEntry(**fields, prev_hash=prev, hash=digest))  # type: ignore[arg-type]
        prev = digest
    return entries


def test_a_whole_chain_holds_and_its_head_matches() -> None:
    chain = _chain(5)
    assert verify_chain(chain) is None
    verifier = ChainVerifier()
    for entry in chain:
        assert verifier.feed(entry) is None
    assert verifier.check_head(5, chain[-1].hash) is None


def test_an_edited_entry_is_named() -> None:
    chain = _chain(5)
    chain[2] = dataclasses.replace(chain[2], target="someone-else")
    broken = verify_chain(chain)
    assert broken is not None and broken.seq == 3 and "edited" in broken.reason


def test_an_edited_detail_is_named_even_deep_inside() -> None:
    chain = _chain(3)
    chain[1] = dataclasses.replace(chain[1], detail={"max_uses": 2, "labels": {"site": "b"}})
    broken = verify_chain(chain)
    assert broken is not None and broken.seq == 2


def test_a_deleted_entry_is_named() -> None:
    chain = _chain(5)
    del chain[1]
    broken = verify_chain(chain)
    assert broken is not None and broken.seq == 2 and "deleted" in broken.reason


def test_reordered_entries_are_named() -> None:
    chain = _chain(5)
    # Swapped positions: each keeps its fields, takes the other's seq.
    second, third = chain[1], chain[2]
    chain[1] = dataclasses.replace(third, seq=2)
    chain[2] = dataclasses.replace(second, seq=3)
    broken = verify_chain(chain)
    assert broken is not None and broken.seq == 2


def test_a_rehashed_entry_that_no_longer_follows_is_named() -> None:
    chain = _chain(4)
    # Edited and its own hash recomputed: the next entry's link still breaks.
    edited = dataclasses.replace(chain[1], target="x")
    fields = {f.name: getattr(edited, f.name) for f in dataclasses.fields(edited)}
    del fields["hash"]
    chain[1] = dataclasses.replace(edited, hash=entry_hash(**fields))
    broken = verify_chain(chain)
    assert broken is not None and broken.seq == 3 and "does not follow" in broken.reason


def test_a_cut_tail_is_named_against_the_head() -> None:
    chain = _chain(5)
    verifier = ChainVerifier()
    for entry in chain[:3]:
        assert verifier.feed(entry) is None
    broken = verifier.check_head(5, chain[-1].hash)
    assert broken is not None and broken.seq == 4 and "deleted" in broken.reason
