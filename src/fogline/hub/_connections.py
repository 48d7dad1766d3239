"""How many connections one hub process holds, per client address and in all.

Each accepted connection takes a `Slot` before any TLS work, and gives it
back when it closes. The table refuses a connection whose address already
holds `max_per_address` slots, so one host cannot take the process's file
descriptors. When all `max_total` slots are taken, it evicts the oldest
connection that has not yet sent a complete request head (a handshake or a
slowloris in progress) to make room; only when there is none does it refuse
the newcomer. A device or operator finishes its handshake and headers in
milliseconds, so the oldest such connections are the stalled ones, and the
hub keeps answering new clients while it sheds them.

The table is per process: with `--workers N`, each worker has its own file
descriptors and its own table.
"""

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# Why a connection was shed, as the metrics and the log name it.
REFUSED_PER_ADDRESS: Final = "per_address"
REFUSED_TOTAL: Final = "total"
EVICTED: Final = "evicted"
HANDSHAKE_TIMEOUT: Final = "handshake_timeout"
HANDSHAKE_FAILED: Final = "handshake_failed"
IDLE_TIMEOUT: Final = "idle_timeout"
HEADER_TIMEOUT: Final = "header_timeout"
BODY_TIMEOUT: Final = "body_timeout"
SHED_REASONS: Final = (
    REFUSED_PER_ADDRESS,
    REFUSED_TOTAL,
    EVICTED,
    HANDSHAKE_TIMEOUT,
    HANDSHAKE_FAILED,
    IDLE_TIMEOUT,
    HEADER_TIMEOUT,
    BODY_TIMEOUT,
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Timeouts and caps of one hub process (see docs/operations.md)."""

    # From accept to the end of the TLS handshake.
    handshake_timeout_s: float = 10.0
    # A connection with no request in progress, before its first request as
    # after a response (uvicorn's keep-alive). The hub sets it from the
    # report interval: devices keep their connection between reports.
    idle_timeout_s: float = 30.0
    # From a request's first byte to its complete head.
    header_timeout_s: float = 20.0
    # The longest gap between two bytes of a request body.
    body_timeout_s: float = 30.0
    # Open connections from one client address (IPv6: one /64); 0: no cap.
    max_per_address: int = 512
    # Open connections in all.
    max_total: int = 32768

    def __post_init__(self) -> None:
        for name in ("handshake_timeout_s", "idle_timeout_s", "header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)!r}")
        if self.max_per_address < 0 or self.max_total < 1:
            raise ValueError(
                "max_per_address must be >= 0 and max_total >= 1, got "
                f"{self.max_per_address} and {self.max_total}"
            )


def address_key(host: str) -> str:
    """The key a client's connections are counted under.

    IPv4 addresses count alone. An IPv6 client usually holds a whole /64, so
    its connections count per /64; an IPv4-mapped IPv6 address is its IPv4.
    """
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return f"{ipaddress.IPv6Network((address, 64), strict=False).network_address}/64"


class Slot:
    """One connection's place in the table, from accept to close."""

    __slots__ = ("_evict", "_released", "_table", "key")

    def __init__(self, table: "ConnectionTable", key: str, evict: Callable[[], object]) -> None:
        self._table = table
        self.key = key
        self._evict = evict
        self._released = False

    def set_evict(self, evict: Callable[[], object]) -> None:
        """How to close this connection from now on (the handshake task at
        first, the TLS transport once the HTTP protocol has it)."""
        self._evict = evict

    def proven(self) -> None:
        """The connection sent a complete request head: no longer evictable."""
        self._table._pending.pop(self, None)

    def shed(self, reason: str) -> None:
        """Count the connection as shed for `reason` (its timer closes it)."""
        self._table.on_shed(reason)

    def release(self) -> None:
        """Give the slot back; safe to call more than once."""
        if self._released:
            return
        self._released = True
        self._table._remove(self)

    def evict(self) -> None:
        self.release()
        self._evict()


class ConnectionTable:
    """The slots of one process; see the module docstring."""

    def __init__(self, limits: ConnectionLimits, on_shed: Callable[[str], None]) -> None:
        self.max_total = limits.max_total
        self.max_per_address = limits.max_per_address
        self.on_shed = on_shed
        self.total = 0
        self._by_address: dict[str, int] = {}
        # Slots that have not sent a complete request head, oldest first
        # (dicts keep insertion order): the candidates for eviction.
        self._pending: dict[Slot, None] = {}

    def admit(self, key: str, evict: Callable[[], object]) -> Slot | None:
        """A slot for a new connection from `key`, or None: refuse it."""
        held = self._by_address.get(key, 0)
        if self.max_per_address and held >= self.max_per_address:
            self.on_shed(REFUSED_PER_ADDRESS)
            return None
        if self.total >= self.max_total:
            oldest = next(iter(self._pending), None)
            if oldest is None:
                self.on_shed(REFUSED_TOTAL)
                return None
            oldest.evict()
            self.on_shed(EVICTED)
            held = self._by_address.get(key, 0)
        slot = Slot(self, key, evict)
        self._by_address[key] = held + 1
        self._pending[slot] = None
        self.total += 1
        return slot

    def held_by(self, key: str) -> int:
        return self._by_address.get(key, 0)

    def _remove(self, slot: Slot) -> None:
        self._pending.pop(slot, None)
        self.total -= 1
        left = self._by_address[slot.key] - 1
        if left:
            self._by_address[slot.key] = left
        else:
            del self._by_address[slot.key]
