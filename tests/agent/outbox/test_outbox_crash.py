"""SIGKILL a real process that is putting and acking: nothing returned is lost."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fogline.agent.outbox import Outbox

# The child prints a line only after the call returned. "a" announces an ack
# before it runs: if the kill lands after its commit but before "A" is
# printed, those seqs may be gone or present, and the check allows both.
CHILD = r"""
import random, sys
from pathlib import Path
import orjson
from fogline.agent.outbox import Outbox, OutboxItem

ob = Outbox.open(Path(sys.argv[1]), max_bytes=10**9)
rng = random.Random(int(sys.argv[2]))
out = sys.stdout
out.write("ready\n"); out.flush()
i = 0
while True:
    n = rng.choice([1, 1, 7, 60])
    items = [OutboxItem("crash", orjson.dumps({"i": i + k}), rng.randrange(10), 3600.0)
             for k in range(n)]
    i += n
    seqs = ob.put_many(items)
    out.write("P " + " ".join(map(str, seqs)) + "\n"); out.flush()
    if rng.random() < 0.25:
        batch = ob.next_batch(max_records=rng.randrange(1, 80), max_bytes=10**6)
        chosen = " ".join(str(r.seq) for r in batch if rng.random() < 0.8)
        out.write("a " + chosen + "\n"); out.flush()
        ob.ack(int(s) for s in chosen.split())
        out.write("A " + chosen + "\n"); out.flush()
"""


def run_and_kill(path: Path, seed: int, rng: random.Random) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(seed)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n", "the child did not start"
    chunks: list[bytes] = []

    def drain() -> None:
        assert proc.stdout is not None
        while data := proc.stdout.read1(65536):
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    time.sleep(rng.uniform(0.02, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    reader.join(10)
    proc.stdout.close()
    text = b"".join(chunks).decode()
    return text.split("\n")[:-1]  # the last piece may be a line cut by the kill


def test_every_returned_put_survives_sigkill_and_acked_rows_stay_gone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rng = random.Random(1234)
    put: list[int] = []
    acked: set[int] = set()
    maybe_acked: set[int] = set()
    committed_unprinted: set[int] = set()
    for round_no in range(5):
        pending: set[int] = set()
        lines = run_and_kill(path, seed=round_no, rng=rng)
        for line in lines:
            kind, _, rest = line.partition(" ")
            seqs = [int(s) for s in rest.split()]
            if kind == "P":
                put += seqs
            elif kind == "a":
                pending = set(seqs)
            elif kind == "A":
                acked |= set(seqs)
                pending = set()
        maybe_acked |= pending
        with Outbox.open(path, max_bytes=10**9) as ob:
            present = {r.seq for r in ob.next_batch(max_records=10**6, max_bytes=10**9)}
            assert not ob.stats().was_reset_after_corruption
        must_exist = set(put) - acked - maybe_acked
        assert must_exist <= present, f"round {round_no}: lost {sorted(must_exist - present)[:10]}"
        assert not acked & present, f"round {round_no}: acked rows came back"
        # A row never printed was committed just before this kill.
        stray = present - set(put) - committed_unprinted
        assert all(seq > max(put) for seq in stray), f"round {round_no}: phantom rows"
        committed_unprinted |= stray
    assert put == sorted(put) and len(put) == len(set(put)), "seqs reused across kills"
    assert len(put) > 50, "the child hardly ran: the kills proved nothing"
