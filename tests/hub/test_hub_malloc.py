"""The hub's glibc malloc settings (hub/_serve.py, fogline/_malloc.py).

Each TLS connection's read buffer (uvloop: 256 KiB, a few KiB of it ever
touched) must be a mapping of its own, not carved from the heap: the hub
fixes glibc's mmap threshold at 128 KiB before serving. Without that, the
first buffer freed raised glibc's moving threshold above 256 KiB, and 64
connections grew the heap by about 18 MiB and the mappings by nothing.
"""

import platform
import socket
import ssl
from pathlib import Path

import pytest

from tests.support.processes import start_hub, tls

CONNECTIONS = 64
BUFFER = 256 * 1024  # uvloop's SSL_READ_MAX_SIZE


def _heap_and_anonymous_bytes(pid: int) -> tuple[int, int]:
    heap = anonymous = 0
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if len(fields) > 5 and fields[5] == "[heap]":
            heap += end - start
        elif len(fields) == 5:  # no path: an anonymous mapping
            anonymous += end - start
    return heap, anonymous


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_each_connection_read_buffer_is_a_mapping_of_its_own(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub")
    conns: list[ssl.SSLSocket] = []
    try:
        assert hub.proc is not None
        context = tls(hub.ca)
        heap0, anonymous0 = _heap_and_anonymous_bytes(hub.proc.pid)
        for _ in range(CONNECTIONS):
            raw = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
            conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
            conns.append(conn)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")  # the hub has the connection
        heap1, anonymous1 = _heap_and_anonymous_bytes(hub.proc.pid)
        # Most of each buffer's mapping, not all: other anonymous mappings (a
        # worker thread's arena trimmed) may shrink meanwhile (short by 4 KiB
        # once). Without the setting the mappings grew by nothing.
        assert anonymous1 - anonymous0 >= CONNECTIONS * BUFFER * 3 // 4
        assert heap1 - heap0 < CONNECTIONS * BUFFER // 2
    finally:
        for conn in conns:
            conn.close()
        hub.stop()
