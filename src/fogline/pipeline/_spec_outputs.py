"""Where a pipeline's records go: `outputs[]`, each the hub (`uplink`) or a
local action (MQTT publish or webhook), with an optional rate limit."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)

from ._spec_base import (
    DAY_S,
    MAX_EXPRESSION_CHARS,
    MAX_PAYLOAD_DEPTH,
    MAX_PAYLOAD_ITEMS,
    MAX_WEBHOOK_TIMEOUT_S,
    Duration,
    ExpressionText,
    Name,
    StepId,
    _Model,
)


def _check_payload(value: Any, depth: int = 0) -> int:
    """Count the items of a JSON-like payload, rejecting deep or huge ones."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise ValueError(f"payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if isinstance(value, dict):
        items = 0
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("payload keys must be strings")
            items += 1 + _check_payload(item, depth + 1)
        return items
    if isinstance(value, list):
        return sum(1 + _check_payload(item, depth + 1) for item in value)
    if isinstance(value, str) and len(value) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"payload strings are at most {MAX_EXPRESSION_CHARS} characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("payload numbers must be finite")
    if value is None or isinstance(value, str | int | float | bool):
        return 0
    raise ValueError(f"payload values must be JSON values, not {type(value).__name__}")


def _payload(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and _check_payload(value) > MAX_PAYLOAD_ITEMS:
        raise ValueError(f"payload has more than {MAX_PAYLOAD_ITEMS} items")
    return value


Payload = Annotated[dict[str, Any] | None, BeforeValidator(_payload)]


class UplinkSpec(_Model):
    """Send the record to the cloud through the node's durable outbox."""

    stream: Name
    """The stream it is stored under at the hub (`fogline telemetry query --stream`)."""
    priority: Annotated[int, Field(ge=0, le=9)] = 5
    """0-9: higher goes first, and is dropped last when the outbox is full."""
    ttl: Annotated[Duration, Field(gt=0, le=365 * DAY_S)] = DAY_S
    """How long the record may wait in the outbox before it expires (dropped, counted)."""


class MqttActionSpec(_Model):
    """Publish to the local broker; `topic` and string payload values are templates."""

    topic: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    """A template: `{field}` is replaced by the record's value, e.g. `actuators/{device}/cmd`."""
    payload: Payload = None
    """A JSON object whose string values are templates (`"{value}"` keeps the value's type);
    default: the record itself.
    """
    qos: Annotated[int, Field(ge=0, le=2)] = 0
    """The publish's MQTT QoS."""
    retain: bool = False
    """Publish as a retained message."""


class WebhookActionSpec(_Model):
    """Call a fixed URL; the URL is not a template, so devices cannot steer it.

    `timeout` bounds the whole call (resolution, connection, answer). The
    node refuses loopback, link-local, private and other non-public
    destinations (after DNS resolution) unless `allowPrivateNetwork` is true.
    """

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2040}$")]
    """The URL to call; fixed, not a template."""
    method: Literal["POST", "PUT"] = "POST"
    """The HTTP method."""
    payload: Payload = None
    """The JSON body: an object whose string values are templates; default: the record itself."""
    timeout: Annotated[Duration, Field(gt=0, le=MAX_WEBHOOK_TIMEOUT_S)] = 10.0
    """The whole call (resolution, connection, request, answer); at most 60s."""
    allowPrivateNetwork: Annotated[bool, Field(strict=True)] = False
    """`true`: the node may call loopback, link-local and private addresses."""


class ActionSpec(_Model):
    """A local action: exactly one of `mqtt` and `webhook`."""

    mqtt: MqttActionSpec | None = None
    """Publish to the node's MQTT broker."""
    webhook: WebhookActionSpec | None = None
    """Call an HTTP endpoint."""

    @model_validator(mode="after")
    def _one_action(self) -> ActionSpec:
        if (self.mqtt is None) == (self.webhook is None):
            raise ValueError("an action is exactly one of mqtt or webhook")
        return self


class RateLimitSpec(_Model):
    """A token bucket: `per_s` tokens a second, at most `burst` saved up."""

    per_s: Annotated[float, Field(gt=0, le=1e6)]
    """Records a second, on average."""
    burst: Annotated[float, Field(ge=1, le=1e6)] | None = None
    """Records at once after a quiet spell (default: `per_s`, at least 1)."""

    @property
    def burst_tokens(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.per_s)


class OutputSpec(_Model):
    """Tap the stream after a step: exactly one of `uplink` and `action`."""

    id: StepId | None = None
    """The output's name in errors and counters (default: `outputs[i]`)."""
    from_: StepId | None = Field(default=None, alias="from")
    """The step whose output it taps (default: the last step; no steps: the source)."""
    when: ExpressionText | None = None
    """A boolean expression: only records for which it is true go out."""
    uplink: UplinkSpec | None = None
    """Send to the hub."""
    action: ActionSpec | None = None
    """Act locally: an MQTT publish or a webhook."""
    rateLimit: RateLimitSpec | None = None
    """At most this many records through this output; the rest are dropped (counted)."""

    @model_validator(mode="after")
    def _one_target(self) -> OutputSpec:
        if (self.uplink is None) == (self.action is None):
            raise ValueError("an output is exactly one of uplink or action")
        return self
