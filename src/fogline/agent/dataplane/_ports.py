"""Where the data plane's emissions go: the outbox, the broker, webhooks.

The engine decides; these ports act. Each ships with an in-memory fake so
the data plane is testable without a broker or a disk.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fogline.agent.outbox import OutboxItem

from ._webhook import WebhookCall, WebhookError


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Hand a message to the broker client; must not block on the network."""


class RecordSink(Protocol):
    async def put_many(self, items: Sequence[OutboxItem]) -> None:
        """Store records durably (the outbox); returns once they are on disk."""


class WebhookCaller(Protocol):
    async def call(self, request: WebhookCall) -> None:
        """Deliver one webhook; raises on failure (counted by the caller).

        Raises:
            WebhookRefusedError: the destination is not allowed; nothing was sent.
            WebhookError: the call failed or ran past its deadline.
        """


@dataclass
class MemoryPublisher:
    messages: list[tuple[str, bytes, int, bool]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.messages.append((topic, payload, qos, retain))


@dataclass
class MemoryRecordSink:
    items: list[OutboxItem] = field(default_factory=list)

    async def put_many(self, items: Sequence[OutboxItem]) -> None:
        self.items.extend(items)


@dataclass
class MemoryWebhookCaller:
    calls: list[WebhookCall] = field(default_factory=list)
    fail: bool = False

    async def call(self, request: WebhookCall) -> None:
        if self.fail:
            raise WebhookError(f"{request.url}: refused (test)")
        self.calls.append(request)


def payload_bytes(value: Any) -> bytes:
    import orjson

    return value if isinstance(value, bytes) else orjson.dumps(value, default=str)
