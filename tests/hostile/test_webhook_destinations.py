"""Where a webhook may go: the address policy over every spelling of an address,
and the caller connecting to the address it checked (real receivers on 127.0.0.1).

The policy is pure: `webhook_target` parses with the parser that sends the
request, `host_refusal` judges the host before DNS, `address_refusal` each
resolved address. The caller tests use a fake resolver, so that a DNS name
can be made to point at 127.0.0.1 without touching the system's resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from pathlib import Path

import pytest

from fogline.agent.dataplane import (
    HttpxWebhookCaller,
    WebhookCall,
    WebhookError,
    WebhookRefusedError,
    address_refusal,
    host_refusal,
    parse_ip_literal,
    webhook_target,
)
from fogline.security import CertificateAuthority
from tests.support.receivers import Receiver

REFUSED = [
    # loopback, every spelling the C library or a URL parser accepts
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.2:8080/x", "loopback"),
    ("http://2130706433/", "loopback"),  # decimal
    ("http://017700000001/", "loopback"),  # octal, one part
    ("http://0x7f.0.0.1/", "loopback"),  # hex
    ("http://0x7f000001/", "loopback"),
    ("http://0x7F.1/", "loopback"),
    ("http://127.1/", "loopback"),  # short
    ("http://127.0.1/", "loopback"),
    ("http://127.0.0.1./", "loopback"),  # trailing dot
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped: 127.0.0.1 is loopback"),
    ("http://[::ffff:7f00:1]/", "IPv4-mapped: 127.0.0.1 is loopback"),
    ("http://[::127.0.0.1]/", "IPv4-compatible: 127.0.0.1 is loopback"),
    ("http://[2002:7f00:1::]/", "6to4: 127.0.0.1 is loopback"),
    ("http://[64:ff9b::7f00:1]/", "NAT64: 127.0.0.1 is loopback"),
    ("http://localhost/", "loopback"),
    ("http://localhost./", "loopback"),
    ("http://LOCALHOST:9271/healthz", "loopback"),
    ("http://LocalHost./", "loopback"),
    ("http://agent.localhost/", "loopback"),
    # user info does not change the host
    ("http://evil@127.0.0.1/", "loopback"),
    ("http://example.com:80@127.0.0.1/", "loopback"),
    ("http://a@b@127.0.0.1/", "loopback"),
    # link-local, cloud metadata
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://2852039166/", "link-local"),  # 169.254.169.254 in decimal
    ("http://0xa9.0xfe.0xa9.0xfe/", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[febf::1]/", "link-local"),
    # private
    ("http://10.0.0.5/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.127.255.254/", "carrier-grade NAT"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[2002:c0a8:101::]/", "6to4: 192.168.1.1 is private"),
    ("http://[64:ff9b:1::a]/", "local-use NAT64"),
    # unspecified, multicast, reserved
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://192.0.2.1/", "documentation"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://[2001:db8::1]/", "documentation"),
    ("http://[2001::1]/", "Teredo"),
    ("http://[100::1]/", "discard"),
    ("http://[::8.8.8.8]/", "IPv4-compatible"),
    ("http://[::ffff:0:7f00:1]/", "not global unicast"),  # IPv4-translated
]

PUBLIC = [
    "http://8.8.8.8/",
    "https://1.1.1.1:8443/hook",
    "http://134744072/",  # 8.8.8.8 in decimal
    "http://[2001:4860:4860::8888]/",
    "http://[::ffff:8.8.8.8]/",
    "http://[2002:808:808::]/",  # 6to4 of 8.8.8.8
    "http://[64:ff9b::808:808]/",  # NAT64 of 8.8.8.8
    "http://172.32.0.1/",  # just outside 172.16.0.0/12
    "http://100.128.0.1/",  # just outside 100.64.0.0/10
    "https://hooks.example.com/x?token=1",  # a name: judged once resolved
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_a_non_public_destination_is_refused_in_every_spelling(url: str, reason: str) -> None:
    _, host = webhook_target(url)
    refusal = host_refusal(host)
    assert refusal is not None and reason in refusal, (url, refusal)


@pytest.mark.parametrize("url", PUBLIC)
def test_a_public_destination_passes(url: str) -> None:
    _, host = webhook_target(url)
    assert host_refusal(host) is None


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("012.0.0.5", "10.0.0.5"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.0.0.1.", "10.0.0.1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_address_spellings_parse_as_the_c_library_reads_them(spelling: str, address: str) -> None:
    parsed = parse_ip_literal(spelling)
    assert parsed is not None and int(parsed) == int(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "name", ["example.com", "1.2.3.4.5", "256.1.1.1", "0x", "08.1.1.1", "1..2", "hooks-1"]
)
def test_names_are_not_mistaken_for_addresses(name: str) -> None:
    assert parse_ip_literal(name) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://0177.0.0.1/",  # octal dotted quads: the sender's parser rejects them
        "http://012.0.0.5/",
        "ftp://example.com/",
        "http:///x",
    ],
)
def test_urls_the_sender_cannot_parse_are_refused(url: str) -> None:
    with pytest.raises(WebhookRefusedError):
        _, host = webhook_target(url)
        if host_refusal(host) is not None:
            raise WebhookRefusedError(host)


def test_every_resolved_address_is_checked() -> None:
    public = ipaddress.ip_address("93.184.216.34")
    assert address_refusal(public) is None
    assert address_refusal(ipaddress.ip_address("169.254.169.254")) is not None


# -- the caller, against real receivers -------------------------------------------


def _resolver(table: dict[str, list[str]], calls: list[str]):
    async def resolve(host: str, port: int) -> list:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


def _call(caller: HttpxWebhookCaller, url: str, **kwargs: object) -> None:
    async def run() -> None:
        try:
            await caller.call(WebhookCall(url, "POST", b'{"v": 1}', **kwargs))
        finally:
            await caller.aclose()

    asyncio.run(run())


def test_a_name_resolving_to_a_private_address_is_refused_and_never_connected() -> None:
    receiver = Receiver("ok")
    calls: list[str] = []
    # One public and one loopback answer: the connection could use either.
    caller = HttpxWebhookCaller(
        resolver=_resolver({"rebind.test": ["93.184.216.34", "127.0.0.1"]}, calls)
    )
    try:
        with pytest.raises(WebhookRefusedError, match=r"rebind\.test resolves to 127\.0\.0\.1"):
            _call(caller, receiver.url(host="rebind.test"))
        assert calls == ["rebind.test"]
        assert receiver.connections == 0
    finally:
        receiver.close()


def test_the_call_goes_to_the_checked_address_with_the_names_host_header() -> None:
    receiver = Receiver("ok")
    calls: list[str] = []
    # rebind.test exists for the fake resolver only: if anything looked the
    # name up a second time (the HTTP client at connect), the call would fail.
    caller = HttpxWebhookCaller(resolver=_resolver({"rebind.test": ["127.0.0.1"]}, calls))
    try:
        _call(caller, receiver.url(host="rebind.test"), allow_private_network=True)
        assert calls == ["rebind.test"]
        assert [s.headers["host"] for s in receiver.seen] == [f"rebind.test:{receiver.port}"]
        assert receiver.seen[0].request_line == "POST /hook HTTP/1.1"
    finally:
        receiver.close()


def _tls_receiver(tmp_path: Path, name: str) -> tuple[Receiver, ssl.SSLContext]:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    ca.issue_server_cert(tmp_path / "key.pem", tmp_path / "cert.pem", [name])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp_path / "ca" / ca.CERT_FILE))
    return Receiver("ok", tls=server), client


def test_tls_uses_the_name_for_sni_and_the_certificate_check(tmp_path: Path) -> None:
    receiver, client_tls = _tls_receiver(tmp_path, "hooks.test")
    calls: list[str] = []
    caller = HttpxWebhookCaller(
        resolver=_resolver({"hooks.test": ["127.0.0.1"]}, calls), tls=client_tls
    )
    try:
        _call(caller, receiver.url(host="hooks.test"), allow_private_network=True)
        assert receiver.seen[0].sni == "hooks.test"
        assert receiver.seen[0].headers["host"] == f"hooks.test:{receiver.port}"
    finally:
        receiver.close()


def test_tls_refuses_a_certificate_for_another_name(tmp_path: Path) -> None:
    receiver, client_tls = _tls_receiver(tmp_path, "other.test")
    caller = HttpxWebhookCaller(
        resolver=_resolver({"hooks.test": ["127.0.0.1"]}, []), tls=client_tls
    )
    try:
        with pytest.raises(WebhookError, match="certificate"):
            _call(caller, receiver.url(host="hooks.test"), allow_private_network=True)
        assert receiver.seen == []
    finally:
        receiver.close()


def test_a_redirect_is_not_followed() -> None:
    target = Receiver("ok")
    redirect = (
        f"HTTP/1.1 302 Found\r\nlocation: {target.url()}\r\ncontent-length: 0\r\n\r\n"
    ).encode()
    receiver = Receiver("ok", answer=redirect)
    try:
        with pytest.raises(WebhookError, match="HTTP 302"):
            _call(HttpxWebhookCaller(), receiver.url(), allow_private_network=True)
        assert len(receiver.seen) == 1 and target.connections == 0
    finally:
        receiver.close()
        target.close()


def test_the_http_client_is_made_at_the_first_call() -> None:
    # Its TLS context holds certifi's CA bundle (1.3 MB): a node that never
    # calls a webhook never pays for it (BENCHMARKS.md, "Agent idle RSS").
    idle = HttpxWebhookCaller()
    assert idle._http is None
    asyncio.run(idle.aclose())  # closing one that never called is fine
    assert idle._http is None
    receiver = Receiver("ok")
    caller = HttpxWebhookCaller()
    try:

        async def run() -> None:
            await caller.call(
                WebhookCall(receiver.url(), "POST", b"{}", allow_private_network=True)
            )
            assert caller._http is not None
            await caller.call(
                WebhookCall(receiver.url(), "POST", b"{}", allow_private_network=True)
            )
            await caller.aclose()

        asyncio.run(run())
        assert len(receiver.seen) == 2
    finally:
        receiver.close()
