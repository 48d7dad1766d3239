"""A damaged database is moved aside and replaced, never a crash loop; seqs stay unique."""

import sqlite3
from pathlib import Path

import orjson
import pytest

from fogline.agent.outbox import Outbox, OutboxItem, OutboxStorageError

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
STAMP = "20231114T221320Z"


def clock() -> float:
    return NOW


def fill(path: Path, n: int) -> list[int]:
    with Outbox.open(path, max_bytes=10**8, clock=clock) as ob:
        return ob.put_many(
            [OutboxItem("s", orjson.dumps({"i": i, "pad": "x" * 500}), 1, 3600) for i in range(n)]
        )


def test_a_garbage_file_is_moved_aside_and_a_fresh_outbox_starts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    garbage = b"this is not a database\x00" * 500
    path.write_bytes(garbage)
    with Outbox.open(path, max_bytes=10_000, clock=clock) as ob:
        stats = ob.stats()
        assert stats.was_reset_after_corruption
        assert stats.corrupt_file == tmp_path / f"outbox.db.corrupt-{STAMP}"
        assert stats.depth == 0
        assert ob.put("s", b"{}", priority=1, ttl_s=60) >= 1
    assert (tmp_path / f"outbox.db.corrupt-{STAMP}").read_bytes() == garbage
    with Outbox.open(path, max_bytes=10_000, clock=clock) as ob:  # the flag is per opening
        assert not ob.stats().was_reset_after_corruption
        assert ob.stats().depth == 1


@pytest.mark.parametrize("damage", ["truncate", "overwrite_middle", "zero_header"])
def test_a_damaged_database_resets_and_new_seqs_start_above_the_old_ones(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "outbox.db"
    old = fill(path, 200)
    data = bytearray(path.read_bytes())
    assert len(data) > 16 * 4096
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "overwrite_middle":
        data[8 * 4096 : 12 * 4096] = b"\xa5" * (4 * 4096)
    else:
        data[:100] = bytes(100)
    path.write_bytes(bytes(data))
    with Outbox.open(path, max_bytes=10**8, clock=clock) as ob:
        assert ob.stats().was_reset_after_corruption
        new = ob.put("s", b"{}", priority=1, ttl_s=60)
    # The hub keeps each (stream, seq) once: a reused seq would be discarded there.
    assert new > max(old)


def test_without_the_reservation_file_seqs_restart_from_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old = fill(path, 5)
    (tmp_path / "outbox.db.seq").unlink()
    path.write_bytes(b"\xff" * 8192)
    with Outbox.open(path, max_bytes=10_000, clock=clock) as ob:
        new = ob.put("s", b"{}", priority=1, ttl_s=60)
    assert new == int(NOW * 1_000_000) > max(old)


def test_a_malformed_reservation_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "outbox.db.seq").write_bytes(b"not a number\n")
    with Outbox.open(tmp_path / "outbox.db", max_bytes=10_000, clock=clock) as ob:
        assert ob.put("s", b"{}", priority=1, ttl_s=60) == 1
    assert int((tmp_path / "outbox.db.seq").read_text()) >= 1


def test_a_stale_wal_never_meets_the_new_database(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"garbage" * 1000)
    (tmp_path / "outbox.db-wal").write_bytes(b"stale wal")
    with Outbox.open(path, max_bytes=10_000, clock=clock) as ob:
        assert ob.stats().was_reset_after_corruption
        ob.put("s", b"{}", priority=1, ttl_s=60)
        wal = tmp_path / "outbox.db-wal"
        assert not wal.exists() or b"stale wal" not in wal.read_bytes()
        assert ob.stats().depth == 1


def test_two_resets_in_the_same_second_keep_both_copies(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    for content in (b"first" * 1000, b"second" * 1000):
        path.write_bytes(content)
        Outbox.open(path, max_bytes=10_000, clock=clock).close()
    assert (tmp_path / f"outbox.db.corrupt-{STAMP}").read_bytes().startswith(b"first")
    assert (tmp_path / f"outbox.db.corrupt-{STAMP}-2").read_bytes().startswith(b"second")


def test_a_foreign_schema_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, body TEXT)")
    conn.commit()
    conn.close()
    with Outbox.open(path, max_bytes=10_000, clock=clock) as ob:
        assert ob.stats().was_reset_after_corruption
        assert ob.put("s", b"{}", priority=1, ttl_s=60) >= 1


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    fill(path, 1)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(OutboxStorageError, match="newer"):
        Outbox.open(path, max_bytes=10_000, clock=clock)
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_drifted_totals_are_rebuilt_on_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    fill(path, 3)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE levels SET bytes = 999999, records = 42")
    conn.commit()
    conn.close()
    with Outbox.open(path, max_bytes=10**8, clock=clock) as ob:
        stats = ob.stats()
        assert stats.depth == 3
        assert stats.bytes == 3 * len(orjson.dumps({"i": 0, "pad": "x" * 500}))


def test_the_reservation_covers_every_committed_seq(tmp_path: Path) -> None:
    seqs = fill(tmp_path / "outbox.db", 7)
    assert int((tmp_path / "outbox.db.seq").read_text()) >= max(seqs)


def test_a_put_whose_reservation_cannot_be_written_fails_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fogline.agent.outbox._seqfloor import SeqReservation

    def broken(self: SeqReservation, last_seq: int) -> None:
        raise OSError(28, "No space left on device")

    with Outbox.open(tmp_path / "outbox.db", max_bytes=10_000, clock=clock) as ob:
        monkeypatch.setattr(SeqReservation, "ensure", broken)
        with pytest.raises(OutboxStorageError, match="reserve"):
            ob.put("s", b"{}", priority=1, ttl_s=60)
        assert (ob.stats().depth, ob.stats().next_seq) == (0, 1)
