"""glibc malloc arenas capped, large blocks mapped, free pages trimmed (issue #18,
"Agent soak").

Each case runs in a fresh interpreter: an arena cap holds for the whole
process and only for threads started after it.
"""

import platform
import subprocess
import sys
import textwrap

import pytest

from fogline import _malloc

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="arenas and malloc_trim are glibc's"
)

# Six threads alive at once, each allocating from malloc (100 kB: above
# pymalloc's small objects, below glibc's mmap threshold), then glibc's own
# per-arena statistics, one "Arena N:" block each, on stderr.
_ARENAS = textwrap.dedent("""\
    import ctypes, sys, threading
    from fogline._malloc import cap_arenas
    if sys.argv[1] == "cap":
        assert cap_arenas(2)
    held, barrier = [], threading.Barrier(6)
    def work():
        barrier.wait()
        held.append([bytearray(100_000) for _ in range(10)])
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ctypes.CDLL(None).malloc_stats()
    """)

# A worker thread fills its arena with 40 MB and frees all but the last
# chunk, which keeps glibc from shrinking the heap by itself; then VmRSS
# before and after a trim, in kB.
_TRIM = textwrap.dedent("""\
    import threading
    from fogline._malloc import trim
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    kept = []
    def work():
        chunks = [bytearray(100_000) for _ in range(400)]
        kept.append(chunks[-1])
        del chunks
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    before = rss()
    trimmed = trim()
    print(before, rss(), trimmed)
    """)


# Freeing a mapped 4 MB block raises glibc's own threshold to 4 MB; then three
# 300 kB blocks are held, and glibc counts its mapped blocks (mallinfo2).
_MMAP = textwrap.dedent("""\
    import ctypes, sys
    from fogline._malloc import fix_mmap_threshold
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "fixed":
        assert fix_mmap_threshold(256 * 1024)
    big = bytearray(4_000_000)
    del big
    held = [bytearray(300_000) for _ in range(3)]
    print(libc.mallinfo2().hblks)
    """)


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _arenas(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _ARENAS, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.count("Arena ")


@glibc_only
def test_capped_arenas_hold_six_threads_to_two() -> None:
    assert _arenas("free") > 2  # without the cap, glibc gives the threads arenas of their own
    assert _arenas("cap") <= 2


@glibc_only
def test_a_fixed_mmap_threshold_maps_large_blocks_after_a_larger_one_was_freed() -> None:
    # glibc's moving threshold would carve them from the heap, where the
    # room they leave when freed stays resident.
    assert int(_run(_MMAP, "fixed")) >= int(_run(_MMAP, "moving")) + 3


@glibc_only
def test_trim_gives_a_threads_freed_memory_back_to_the_kernel() -> None:
    done = subprocess.run([sys.executable, "-c", _TRIM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, after, trimmed = done.stdout.split()
    assert trimmed == "True"
    assert int(before) - int(after) > 20_000, (before, after)  # most of the 40 MB


def test_off_glibc_both_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_malloc, "_glibc", lambda: None)
    assert _malloc.cap_arenas(2) is False
    assert _malloc.fix_mmap_threshold(256 * 1024) is False
    assert _malloc.trim() is False


def test_a_cap_or_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _malloc.cap_arenas(0)
    with pytest.raises(ValueError, match="at least 1"):
        _malloc.fix_mmap_threshold(0)
