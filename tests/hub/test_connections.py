"""The connection table's caps and eviction order, and the limits' arithmetic."""

import pytest

from fogline.hub import ConnectionLimits, parse_metrics_listen
from fogline.hub._connections import ConnectionTable, address_key
from fogline.hub._listener import fit_limits


def _table(total: int, per_address: int) -> tuple[ConnectionTable, list[str]]:
    shed: list[str] = []
    limits = ConnectionLimits(max_total=total, max_per_address=per_address)
    return ConnectionTable(limits, shed.append), shed


def test_an_address_over_its_cap_is_refused_and_others_are_not() -> None:
    table, shed = _table(total=10, per_address=2)
    assert table.admit("10.0.0.1", lambda: None) and table.admit("10.0.0.1", lambda: None)
    assert table.admit("10.0.0.1", lambda: None) is None
    assert table.admit("10.0.0.2", lambda: None) is not None
    assert shed == ["per_address"] and table.total == 3


def test_a_full_table_evicts_the_oldest_connection_without_a_request() -> None:
    table, shed = _table(total=3, per_address=0)
    evicted: list[str] = []
    first = table.admit("a", lambda: evicted.append("first"))
    second = table.admit("b", lambda: evicted.append("second"))
    third = table.admit("c", lambda: evicted.append("third"))
    assert first and second and third
    first.proven()  # sent a request head: a real client, kept
    assert table.admit("d", lambda: None) is not None
    assert evicted == ["second"] and shed == ["evicted"] and table.total == 3
    second.release()  # the evicted connection closing later changes nothing
    assert table.total == 3 and table.held_by("b") == 0


def test_a_full_table_of_proven_connections_refuses_newcomers() -> None:
    table, shed = _table(total=2, per_address=0)
    for key in ("a", "b"):
        slot = table.admit(key, lambda: None)
        assert slot is not None
        slot.proven()
    assert table.admit("c", lambda: None) is None
    assert shed == ["total"]


def test_release_is_idempotent_and_frees_the_address() -> None:
    table, _ = _table(total=5, per_address=1)
    slot = table.admit("a", lambda: None)
    assert slot is not None
    slot.release()
    slot.release()
    assert table.total == 0 and table.held_by("a") == 0
    assert table.admit("a", lambda: None) is not None


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_ipv6_clients_count_per_64(host: str, key: str) -> None:
    assert address_key(host) == key


def test_limits_are_lowered_to_fit_the_open_file_limit() -> None:
    wide = ConnectionLimits(max_total=32768, max_per_address=512)
    assert fit_limits(wide, 1 << 20) == wide
    fitted = fit_limits(wide, 1024)
    assert fitted.max_total == 1024 - 256
    assert fitted.max_per_address == (1024 - 256) // 4  # one address: a quarter at most
    assert fit_limits(wide, 256).max_total == 256 - 64
    assert fit_limits(ConnectionLimits(max_per_address=0), 1024).max_per_address == 0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="header_timeout_s"):
        ConnectionLimits(header_timeout_s=0)
    with pytest.raises(ValueError, match="max_total"):
        ConnectionLimits(max_total=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("localhost:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("127.8.9.10:0", ("127.8.9.10", 0)),
    ],
)
def test_metrics_listen_accepts_loopback(text: str, expected: tuple[str, int]) -> None:
    assert parse_metrics_listen(text, allow_public=False) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0.0.0.0:9464", "not a loopback address"),
        ("10.1.2.3:9464", "not a loopback address"),
        ("[::]:9464", "not a loopback address"),
        ("prometheus.local:9464", "expected an IP address"),
        ("127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:99999", "expected HOST:PORT"),
    ],
)
def test_metrics_listen_refuses_the_network_unless_told(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_metrics_listen(text, allow_public=False)


def test_metrics_listen_public_is_an_explicit_choice() -> None:
    assert parse_metrics_listen("0.0.0.0:9464", allow_public=True) == ("0.0.0.0", 9464)
