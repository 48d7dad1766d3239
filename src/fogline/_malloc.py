"""glibc malloc settings for a process that runs for months (a no-op off glibc):
the agent (agent/_agent.py) and the hub's server processes (hub/_serve.py).

The agent's blocking work (outbox reads and acks, batch encoding, SQLite)
runs on `asyncio.to_thread` workers. glibc gives each thread that finds the
main arena busy an arena of its own (up to 8 per core), and memory freed in
one stays mapped there: the 24-hour soak grew +13 MB/h in such arenas with
Python objects flat (BENCHMARKS.md, "Agent soak"). Capping the arenas and
trimming free pages back to the kernel keeps RSS flat; Python has no API for
either, hence ctypes.
"""

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("fogline")

# <malloc.h>: mallopt parameters.
M_MMAP_THRESHOLD = -3  # blocks this large or larger get a mapping of their own
M_ARENA_MAX = -8  # the most arenas glibc may create


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library this process runs with, if it is glibc; None otherwise (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: the libc the interpreter uses
    except OSError:
        return None
    # Only glibc has gnu_get_libc_version; musl's mallopt and malloc_trim are stubs or absent.
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def _mallopt(param: int, name: str, value: int) -> bool:
    """glibc's mallopt(param, value), `value` at least 1; False off glibc."""
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(param, value))


def cap_arenas(limit: int) -> bool:
    """Let glibc create at most `limit` malloc arenas from now on; True if it took.

    Call before the process starts threads: arenas already made stay. Off glibc
    this does nothing and returns False.
    """
    return _mallopt(M_ARENA_MAX, "limit", limit)


def fix_mmap_threshold(size: int) -> bool:
    """Serve every block of `size` bytes or more from a mapping of its own,
    unmapped when freed; True if it took. Off glibc this does nothing.

    glibc's threshold otherwise rises to the largest block freed so far (up
    to 32 MB): after one large outbox batch, later ones are carved from the
    arenas, where what they leave free stays resident.
    """
    return _mallopt(M_MMAP_THRESHOLD, "size", size)


def trim() -> bool:
    """Give free pages of every malloc arena back to the kernel; True if any were.

    Off glibc this does nothing and returns False.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
