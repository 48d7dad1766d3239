"""The audit hash chain: each entry's hash covers its own fields and the hash
of the entry before it, so an edited, deleted or reordered entry breaks every
link after it.

Pure, entries in and verdict out: the hub hashes with `entry_hash` when it
appends (hub/_audit.py), and `fogline audit verify` checks what the hub
serves with a `ChainVerifier`, so both hash the same bytes.

What it proves: the entries are the ones appended, in that order, none
missing, as long as the head (`seq`, `hash`) an auditor holds is genuine.
What it does not: whoever can write the database can recompute the whole
chain; anchor it by keeping the head outside the hub (docs/security.md).
"""

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from fogline.protocol import canonical_json

# The "previous hash" of the first entry.
GENESIS: Final = "0" * 64


def at_text(when: dt.datetime) -> str:
    """The one text form of an entry's time that is hashed and served:
    UTC, microseconds, `Z` (both databases keep microseconds)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One audit entry as hashed: its position, its fields and its links."""

    seq: int
    at: str  # at_text()
    actor: str
    source: str
    action: str
    target: str
    outcome: str
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> "ChainEntry":
        """From the hub's JSON view of an entry (GET /v1/audit).

        Raises:
            KeyError, TypeError, ValueError: a field is missing or of the wrong type.
        """
        detail = entry["detail"]
        if not isinstance(detail, Mapping):
            raise TypeError("detail: expected an object")
        return cls(
            seq=int(entry["seq"]),
            at=str(entry["at"]),
            actor=str(entry["actor"]),
            source=str(entry["source"]),
            action=str(entry["action"]),
            target=str(entry["target"]),
            outcome=str(entry["outcome"]),
            detail=detail,
            prev_hash=str(entry["prev_hash"]),
            hash=str(entry["hash"]),
        )


def entry_hash(
    *,
    seq: int,
    at: str,
    actor: str,
    source: str,
    action: str,
    target: str,
    outcome: str,
    detail: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """sha256 (hex) of the canonical JSON of the entry's fields and the previous hash.

    Raises:
        TypeError: `detail` holds something that is not a JSON value.
    """
    document = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "source": source,
        "action": action,
        "target": target,
        "outcome": outcome,
        "detail": dict(detail),
        "prev": prev_hash,
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()


def hash_of(entry: ChainEntry) -> str:
    """What `entry.hash` must be, recomputed from its fields."""
    return entry_hash(
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        source=entry.source,
        action=entry.action,
        target=entry.target,
        outcome=entry.outcome,
        detail=entry.detail,
        prev_hash=entry.prev_hash,
    )


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first entry where the chain does not hold, and why."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.reason}"


class ChainVerifier:
    """Checks entries fed in order, one page at a time; remembers the head.

    Starts at the genesis, or at an anchor (a head exported earlier) to
    check only what came after it.
    """

    def __init__(self, seq: int = 0, hash_hex: str = GENESIS) -> None:
        self.seq = seq
        self.hash = hash_hex

    def feed(self, entry: ChainEntry) -> ChainBreak | None:
        """Check the next entry; None when it follows the last one."""
        expected = self.seq + 1
        if entry.seq > expected:
            return ChainBreak(expected, f"missing (deleted): the next entry is {entry.seq}")
        if entry.seq < expected:
            return ChainBreak(entry.seq, f"out of order or duplicated after entry {self.seq}")
        try:
            recomputed = hash_of(entry)
        except TypeError as exc:
            return ChainBreak(entry.seq, f"unhashable detail ({exc})")
        if recomputed != entry.hash:
            return ChainBreak(entry.seq, "edited or moved: its fields do not match its hash")
        if entry.prev_hash != self.hash:
            return ChainBreak(
                entry.seq,
                f"does not follow entry {self.seq} (reordered, or an entry was replaced)",
            )
        self.seq, self.hash = entry.seq, entry.hash
        return None

    def check_head(self, seq: int, hash_hex: str) -> ChainBreak | None:
        """After the last entry: the head the hub stored must be where the chain ended."""
        if seq > self.seq:
            return ChainBreak(self.seq + 1, f"missing (deleted): the head is entry {seq}")
        if (seq, hash_hex) != (self.seq, self.hash):
            return ChainBreak(seq, "the stored head does not match the chain")
        return None


def verify_chain(entries: Iterable[ChainEntry]) -> ChainBreak | None:
    """The first break in a whole chain from the genesis; None when it holds."""
    verifier = ChainVerifier()
    for entry in entries:
        broken = verifier.feed(entry)
        if broken is not None:
            return broken
    return None
