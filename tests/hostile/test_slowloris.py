"""Slowloris against a real hub (issue #12): connections that stall in the TLS
handshake, the request head or the body are closed after their timeouts, and
an attacker holding many connections, from one address or several, hits the
caps while operators and devices are still answered. The hub runs under an
open-file limit of 256, the limit the original attack exhausted."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.device import FACTS, enroll_device
from tests.support.processes import HubProcess, start_hub, tls, wait_until

if TYPE_CHECKING:  # for annotations only: pytest would collect a Test* class
    from tests.support.device import TestDevice

OPEN_FILES = 256
HANDSHAKE_S, IDLE_S, HEADER_S, BODY_S = 1.0, 3.0, 1.5, 1.0
MAX_TOTAL, PER_ADDRESS = 64, 16
REPORT = {"facts": FACTS, "labels": {}}


@pytest.fixture(scope="module")
def quick_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """Short timeouts, caps out of the way."""
    hub = start_hub(
        tmp_path_factory.mktemp("quick") / "hub",
        open_files_limit=OPEN_FILES,
        extra_args=[
            *("--handshake-timeout", str(HANDSHAKE_S)),
            *("--idle-timeout", str(IDLE_S)),
            *("--header-timeout", str(HEADER_S)),
            *("--body-timeout", str(BODY_S)),
        ],
    )
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def capped_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """Small caps and timeouts long enough that only the caps protect it."""
    hub = start_hub(
        tmp_path_factory.mktemp("capped") / "hub",
        open_files_limit=OPEN_FILES,
        extra_args=[
            *("--handshake-timeout", "60", "--header-timeout", "60"),
            *("--max-connections", str(MAX_TOTAL)),
            *("--max-connections-per-address", str(PER_ADDRESS)),
        ],
    )
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def device(capped_hub: HubProcess, tmp_path_factory: pytest.TempPathFactory) -> TestDevice:
    return enroll_device(
        capped_hub, capped_hub.create_claim(), "bystander", tmp_path_factory.mktemp("dev")
    )


# -- helpers ---------------------------------------------------------------------


def _tcp(hub: HubProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    try:
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", hub.port))
    except OSError:
        sock.close()  # a connect the hub refused must not leak its socket
        raise
    return sock


def _attack(hub: HubProcess, source: str, count: int) -> list[socket.socket]:
    """`count` TCP connections from `source` that never send a byte; those
    the hub resets at once (even during connect) are left out."""
    held = []
    for _ in range(count):
        try:
            held.append(_tcp(hub, source))
        except OSError:
            continue
    return held


def _tls(hub: HubProcess) -> ssl.SSLSocket:
    return tls(hub.ca).wrap_socket(_tcp(hub), server_hostname="127.0.0.1")


def _seconds_until_closed(sock: socket.socket, limit_s: float, drip: bytes = b"") -> float:
    """Seconds until the hub closes `sock` (EOF or reset), sending `drip`
    every quarter second meanwhile; fails after `limit_s`."""
    started = time.monotonic()
    sock.settimeout(0.25)
    for _ in range(int(limit_s / 0.25) + 1):
        try:
            if drip:
                sock.sendall(drip)
            if not sock.recv(4096):
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset, broken pipe, TLS EOF: closed
            return time.monotonic() - started
    raise AssertionError(f"the hub kept the connection open for {limit_s}s")


def _read_status(sock: socket.socket) -> int:
    """The status of one whole response (head and Content-Length body)."""
    sock.settimeout(5)
    data = b""
    for _ in range(64):
        data += sock.recv(4096)
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return int(head.split(b" ", 2)[1])
    raise AssertionError(f"no whole response: {data[:200]!r}")


def _is_open(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return bool(sock.recv(1))
    except TimeoutError:
        return True
    except OSError:
        return False


def _metric(hub: HubProcess, line_prefix: str) -> float:
    with hub.client() as client:
        text = client.get("/metrics").text
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix)
    ]
    return values[0] if values else 0.0


def _shed(hub: HubProcess, reason: str) -> float:
    return _metric(hub, f'fogline_hub_connections_shed_total{{reason="{reason}"}}')


def _open_connections(hub: HubProcess) -> float:
    return _metric(hub, "fogline_hub_connections_open ")


def _open_files(hub: HubProcess) -> int:
    assert hub.proc is not None
    return len(os.listdir(f"/proc/{hub.proc.pid}/fd"))


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# -- timeouts --------------------------------------------------------------------


def test_a_connection_stalled_in_the_tls_handshake_is_closed(quick_hub: HubProcess) -> None:
    with _tcp(quick_hub) as sock:  # TCP only: no ClientHello ever
        elapsed = _seconds_until_closed(sock, 10)
    assert HANDSHAKE_S * 0.8 <= elapsed <= HANDSHAKE_S + 3
    assert _shed(quick_hub, "handshake_timeout") >= 1


def test_a_connection_that_never_sends_a_request_is_closed(quick_hub: HubProcess) -> None:
    with _tls(quick_hub) as sock:  # handshake done, then silence
        elapsed = _seconds_until_closed(sock, 15)
    assert IDLE_S * 0.7 <= elapsed <= IDLE_S + 3
    assert _shed(quick_hub, "idle_timeout") >= 1


def test_a_request_head_that_never_ends_is_closed(quick_hub: HubProcess) -> None:
    with _tls(quick_hub) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
        elapsed = _seconds_until_closed(sock, 10)
    assert HEADER_S * 0.8 <= elapsed <= HEADER_S + 3
    assert _shed(quick_hub, "header_timeout") >= 1


def test_a_request_head_dripped_a_byte_at_a_time_is_closed_at_its_deadline(
    quick_hub: HubProcess,
) -> None:
    # each byte arrives well within any idle timeout; the head's deadline holds
    with _tls(quick_hub) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        elapsed = _seconds_until_closed(sock, 10, drip=b"X")
    assert elapsed <= HEADER_S + 3


def test_a_body_that_stops_arriving_is_closed(quick_hub: HubProcess) -> None:
    with _tls(quick_hub) as sock:
        sock.sendall(
            b"POST /v1/telemetry HTTP/1.1\r\nHost: hub\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
        )
        elapsed = _seconds_until_closed(sock, 10)
    assert BODY_S * 0.8 <= elapsed <= BODY_S + 3
    assert _shed(quick_hub, "body_timeout") >= 1


def test_a_slow_but_steady_body_and_an_idle_kept_alive_connection_are_served(
    quick_hub: HubProcess,
) -> None:
    with _tls(quick_hub) as sock:
        sock.sendall(b"POST /v1/telemetry HTTP/1.1\r\nHost: hub\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):  # 3 s in all: longer than the body and header timeouts
            time.sleep(0.3)
            sock.sendall(b"x")
        assert _read_status(sock) == 401  # the body arrived whole; no client certificate
        time.sleep(HEADER_S + 0.5)  # idle between requests: within the idle timeout
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        assert _read_status(sock) == 200


# -- caps ------------------------------------------------------------------------


def test_one_address_holds_at_most_its_cap_while_others_are_served(
    capped_hub: HubProcess, device: TestDevice
) -> None:
    refused_before = _shed(capped_hub, "per_address")
    attacker = _attack(capped_hub, "127.0.0.2", PER_ADDRESS + 24)
    try:
        wait_until(
            lambda: _shed(capped_hub, "per_address") - refused_before >= 24,
            10,
            "the hub to refuse the attacker's connections over its cap",
        )
        assert sum(_is_open(sock) for sock in attacker) == PER_ADDRESS
        with capped_hub.client() as client:  # an operator, from 127.0.0.1
            assert client.get("/v1/devices").status_code == 200
        assert device.report().status_code == 200
    finally:
        _close_all(attacker)
    wait_until(lambda: _open_connections(capped_hub) <= 2, 10, "the attacker's slots to free")


def test_many_addresses_fill_the_total_and_the_hub_sheds_them_to_serve_others(
    capped_hub: HubProcess, device: TestDevice
) -> None:
    with device.client() as kept_alive:
        assert kept_alive.post("/v1/report", json=REPORT).status_code == 200
        attackers: list[socket.socket] = []
        try:
            for source in range(2, 10):  # 8 addresses x 16 = twice the total cap
                attackers += _attack(capped_hub, f"127.0.0.{source}", PER_ADDRESS)
            wait_until(
                lambda: _shed(capped_hub, "evicted") >= MAX_TOTAL - 2,
                10,
                "the hub to evict the oldest stalled connections",
            )
            assert _open_connections(capped_hub) <= MAX_TOTAL
            assert _open_files(capped_hub) < OPEN_FILES - 32
            with capped_hub.client() as client:
                assert client.get("/v1/devices").status_code == 200
            assert device.report().status_code == 200  # a new connection
            assert kept_alive.post("/v1/report", json=REPORT).status_code == 200
        finally:
            _close_all(attackers)
    wait_until(lambda: _open_connections(capped_hub) <= 2, 10, "the attackers' slots to free")
    assert "hub.accept_failed" not in capped_hub.log_text()  # never out of descriptors


def test_workers_shed_stalled_connections_too(tmp_path: Path) -> None:
    hub = start_hub(
        tmp_path / "hub",
        extra_args=[
            *("--workers", "2", "--header-timeout", str(HEADER_S)),
            *("--max-connections-per-address", "4"),
        ],
    )
    try:
        with _tls(hub) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            assert _seconds_until_closed(sock, 10) <= HEADER_S + 3
        attacker = _attack(hub, "127.0.0.2", 20)
        try:
            # each worker caps the address on its own: at most 2 x 4 held
            wait_until(
                lambda: sum(_is_open(sock) for sock in attacker) <= 8,
                10,
                "the workers to refuse the attacker over their caps",
            )
            with hub.client() as client:
                assert client.get("/v1/devices").status_code == 200
        finally:
            _close_all(attacker)
    finally:
        hub.stop()
