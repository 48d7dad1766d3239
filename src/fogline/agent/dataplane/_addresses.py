"""Which addresses a webhook may reach: pure functions, no I/O.

A webhook URL is written by an operator, but the node calls it from inside
the site's network: without a check, a deployment could make every node
read its cloud metadata (169.254.169.254), the PLC web UI on 10.0.0.5 or the
agent's own local endpoint. So a webhook may reach public addresses only,
unless its action says `allowPrivateNetwork: true`.

The check runs on addresses, after DNS resolution (the caller resolves and
then connects to the address it checked, never resolving twice). Host
spellings that the C library reads as an IPv4 address (`2130706433`,
`0177.0.0.1`, `0x7f.1`, `127.1`) are parsed here the way inet_aton(3) reads
them, and IPv6 forms that embed an IPv4 address (IPv4-mapped,
IPv4-compatible, 6to4, NAT64) are judged by the address they embed.
"""

import ipaddress
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4: Final = ipaddress.IPv4Network
_V6: Final = ipaddress.IPv6Network

# (network, category), most specific first where they nest. Anything not
# listed is public. Sources: the IANA special-purpose address registries.
_V4_SPECIAL: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = (
    (_V4("0.0.0.0/8"), "unspecified"),  # "this network": 0.0.0.0 reaches the host itself
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "private (carrier-grade NAT)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (cloud metadata)"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("192.0.2.0/24"), "reserved (documentation)"),
    (_V4("192.88.99.0/24"), "reserved (6to4 relay)"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "reserved (benchmarking)"),
    (_V4("198.51.100.0/24"), "reserved (documentation)"),
    (_V4("203.0.113.0/24"), "reserved (documentation)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # includes the broadcast 255.255.255.255
)

_V6_SPECIAL: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "private (local-use NAT64)"),
    (_V6("100::/64"), "reserved (discard)"),
    (_V6("2001:db8::/32"), "reserved (documentation)"),
    (_V6("2001::/23"), "reserved (protocol assignments, Teredo)"),
    (_V6("3fff::/20"), "reserved (documentation)"),
    (_V6("5f00::/16"), "reserved (segment routing)"),
    (_V6("fc00::/7"), "private (unique local)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "private (site-local)"),
    (_V6("ff00::/8"), "multicast"),
)
_V6_GLOBAL_UNICAST: Final = _V6("2000::/3")
_V4_COMPATIBLE: Final = _V6("::/96")
_NAT64: Final = _V6("64:ff9b::/96")
_LOCALHOST: Final = "localhost"


def parse_ipv4_like(host: str) -> ipaddress.IPv4Address | None:
    """`host` as inet_aton(3) reads it, or None when it is not such a spelling.

    1 to 4 dot-separated parts, each decimal, octal (leading 0) or hex (0x);
    the last part fills the remaining bytes: `127.1` is 127.0.0.1 and
    `2130706433` is 127.0.0.1 too. One trailing dot is ignored, as resolvers do.
    """
    text = host.removesuffix(".")
    parts = text.split(".")
    if not text or len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _parse_number(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(v > 0xFF for v in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _parse_number(part: str) -> int | None:
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
        valid = "0123456789abcdefABCDEF"
    elif len(part) > 1 and part.startswith("0"):
        digits, base, valid = part[1:], 8, "01234567"
    else:
        digits, base, valid = part, 10, "0123456789"
    if not digits or len(digits) > 32 or any(c not in valid for c in digits):
        return None
    return int(digits, base)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells, in any notation, or None for a DNS name.

    `host` is a URL's host without brackets (`::1`, `fe80::1%eth0`).
    """
    if ":" in host:
        address, _, _zone = host.partition("%")  # a zone id does not change the address
        try:
            return ipaddress.IPv6Address(address)
        except ValueError:
            return None
    return parse_ipv4_like(host)


def name_refusal(host: str) -> str | None:
    """Why a DNS name is refused before it is even resolved, or None.

    `localhost` and its subdomains are loopback by definition (RFC 6761),
    whatever a resolver would answer.
    """
    name = host.lower().removesuffix(".")
    if not name:
        return "the URL has no host"
    if name == _LOCALHOST or name.endswith("." + _LOCALHOST):
        return f"{host} is loopback"
    return None


def host_refusal(host: str) -> str | None:
    """Why `host` (a URL's host, without brackets) is refused before any DNS
    lookup, or None: a public address, or a name whose addresses are still
    to be resolved and checked one by one with `address_refusal`."""
    literal = parse_ip_literal(host)
    return name_refusal(host) if literal is None else address_refusal(literal)


def address_refusal(address: IPAddress) -> str | None:
    """Why a webhook may not connect to `address`, or None when it is public."""
    if isinstance(address, ipaddress.IPv4Address):
        for network, category in _V4_SPECIAL:
            if address in network:
                return f"{address} is {category}"
        return None
    plain = ipaddress.IPv6Address(int(address))  # without a zone id
    embedded, form = _embedded_ipv4(plain)
    if embedded is not None:
        inner = address_refusal(embedded)
        if inner:
            return f"{address} is {form}: {inner}"
        # IPv4-compatible addresses are deprecated (RFC 4291) and never routed.
        return f"{address} is reserved (IPv4-compatible)" if form == "IPv4-compatible" else None
    for network6, category in _V6_SPECIAL:
        if plain in network6:
            return f"{address} is {category}"
    if plain not in _V6_GLOBAL_UNICAST:
        return f"{address} is reserved (not global unicast)"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address | None, str]:
    """The IPv4 address an IPv6 form carries, and the form's name."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64:
        return low32, "NAT64"
    if address in _V4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return low32, "IPv4-compatible"
    return None, ""
