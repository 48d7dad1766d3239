"""Runs the desired state's pipelines on the node and carries out what they emit.

Records arrive in batches (from MQTT or the HTTP ingest) and go through
every pipeline whose source matches. Emissions are acted on at once:
MQTT actions are handed to the broker client before the next batch
(the sub-millisecond path), webhooks run as owned tasks, and records for
the cloud are group-committed to the outbox once per batch.

Crash semantics: a record is durable once its batch's `put_many` returned.
Open windows and detector state live in memory and are lost on a crash
(the pipeline starts them fresh); what already reached the outbox is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson

from fogline._log import event
from fogline.agent.outbox import OutboxItem

from ._ports import Publisher, RecordSink, WebhookCaller, payload_bytes
from ._webhook import WebhookCall, WebhookRefusedError, loggable_url

if TYPE_CHECKING:
    from fogline.pipeline import Emission, Pipeline, WebhookActionSpec

log = logging.getLogger("fogline.agent.dataplane")
# Each in-flight call holds a task, a socket and at most a deadline's time:
# beyond the caps, new calls are dropped (and counted) rather than queued.
MAX_WEBHOOKS_IN_FLIGHT: Final = 16
# So that one slow receiver cannot take every slot from the others.
MAX_WEBHOOKS_PER_DESTINATION: Final = 4
# A failing or refused webhook is logged at most this often per URL (with
# how many were not logged): an output firing per record must not flood the log.
WEBHOOK_LOG_INTERVAL_S: Final = 60.0


@dataclass
class DataPlaneCounters:
    records_in: int = 0
    unmatched: int = 0
    bad_payloads: int = 0
    uplinked: int = 0
    published: int = 0
    publish_failures: int = 0
    webhooks: int = 0
    webhook_failures: int = 0
    webhooks_dropped: int = 0
    webhooks_refused: int = 0
    by_pipeline: dict[str, int] = field(default_factory=dict)


def record_from_mqtt(fields: Mapping[str, str], payload: bytes) -> dict[str, Any] | None:
    """A JSON object payload becomes the record; a bare JSON value becomes `value`.
    Topic segments (`sensors/{device}/{metric}`) become fields, unless the
    payload sets them itself."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    record = value if isinstance(value, dict) else {"value": value}
    for key, segment in fields.items():
        record.setdefault(key, segment)
    return record


class DataPlane:
    def __init__(
        self,
        publisher: Publisher,
        sink: RecordSink,
        webhooks: WebhookCaller,
        clock: Any = time.time,
    ) -> None:
        self.publisher = publisher
        self.sink = sink
        self.webhooks = webhooks
        self.clock = clock
        self.pipelines: dict[str, Pipeline] = {}
        self.counters = DataPlaneCounters()
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhooks_per_destination: dict[str, int] = {}
        self._webhook_log: dict[str, tuple[float, int]] = {}  # url -> (last logged, unlogged)

    # -- configuration ---------------------------------------------------------

    def configure(self, specs: Sequence[Mapping[str, Any]]) -> None:
        """Replace the running pipelines with `specs`, keeping the state of
        unchanged steps (their open windows) across the change.

        Raises:
            PipelineSpecError: a spec is invalid (the hub should have caught it).
        """
        if not specs and not self.pipelines:
            return  # no pipelines: the engine (and its imports) is not needed
        from fogline.pipeline import build_pipeline, validate_pipeline

        validated = [validate_pipeline(raw) for raw in specs]
        fresh: dict[str, Pipeline] = {}
        for spec in validated:
            current = self.pipelines.get(spec.name)
            fresh[spec.name] = current.replace_with(spec) if current else build_pipeline(spec)
        self.pipelines = fresh
        self._webhook_log.clear()  # keyed by URL: the old pipelines' URLs may be gone
        event(log, "dataplane.configured", pipelines=sorted(fresh))

    def mqtt_filters(self) -> dict[str, int]:
        """Topic filters to subscribe, with the highest QoS any pipeline asks for."""
        filters: dict[str, int] = {}
        for pipeline in self.pipelines.values():
            pattern = pipeline.source_pattern
            if pattern is not None:
                qos = pipeline.spec.source.qos or 0
                filters[pattern.mqtt_filter] = max(qos, filters.get(pattern.mqtt_filter, 0))
        return filters

    # -- data ----------------------------------------------------------------------

    async def on_mqtt_batch(self, messages: Sequence[tuple[str, bytes]]) -> None:
        now = self.clock()
        emissions: list[Emission] = []
        for pipeline in self.pipelines.values():
            pattern = pipeline.source_pattern
            if pattern is None:
                continue
            batch = []
            for topic, payload in messages:
                fields = pattern.match(topic)
                if fields is None:
                    continue
                record = record_from_mqtt(fields, payload)
                if record is None:
                    self.counters.bad_payloads += 1
                    continue
                batch.append(record)
            if batch:
                self.counters.by_pipeline[pipeline.name] = self.counters.by_pipeline.get(
                    pipeline.name, 0
                ) + len(batch)
                emissions += pipeline.process_many(batch, now)
        self.counters.records_in += len(messages)
        await self.dispatch(emissions)

    async def on_http_records(self, records: list[dict[str, Any]]) -> int:
        """Records POSTed to the local ingest go to every pipeline with an http source."""
        now = self.clock()
        emissions: list[Emission] = []
        targets = [p for p in self.pipelines.values() if p.spec.source.http is not None]
        for pipeline in targets:
            # Each pipeline may add fields: give each its own copies.
            emissions += pipeline.process_many([dict(r) for r in records], now)
        self.counters.records_in += len(records)
        if not targets:
            self.counters.unmatched += len(records)
        await self.dispatch(emissions)
        return len(targets)

    async def tick(self) -> None:
        now = self.clock()
        emissions: list[Emission] = []
        for pipeline in self.pipelines.values():
            emissions += pipeline.tick(now)
        await self.dispatch(emissions)

    async def flush(self) -> None:
        now = self.clock()
        emissions: list[Emission] = []
        for pipeline in self.pipelines.values():
            emissions += pipeline.flush(now)
        await self.dispatch(emissions)

    async def dispatch(self, emissions: Sequence[Emission]) -> None:
        items: list[OutboxItem] = []
        for emission in emissions:
            output = emission.output
            if output.uplink is not None:
                items.append(
                    OutboxItem(
                        output.uplink.stream,
                        payload_bytes(emission.record),
                        output.uplink.priority,
                        float(output.uplink.ttl),
                    )
                )
            elif output.action is not None and output.action.mqtt is not None:
                self._publish(emission)
            elif output.action is not None and output.action.webhook is not None:
                self._start_webhook(emission)
        if items:
            await self.sink.put_many(items)
            self.counters.uplinked += len(items)

    def _publish(self, emission: Emission) -> None:
        mqtt = emission.output.action.mqtt  # type: ignore[union-attr]
        assert mqtt is not None and emission.topic is not None
        try:
            self.publisher.publish(
                emission.topic, payload_bytes(emission.payload), mqtt.qos, mqtt.retain
            )
            self.counters.published += 1
        except Exception as exc:  # the broker client's failure is counted, never fatal
            self.counters.publish_failures += 1
            event(
                log,
                "dataplane.publish_failed",
                logging.WARNING,
                topic=emission.topic,
                error=str(exc),
            )

    def _start_webhook(self, emission: Emission) -> None:
        hook = emission.output.action.webhook  # type: ignore[union-attr]
        assert hook is not None
        destination = webhook_destination(hook.url)
        busy = self._webhooks_per_destination.get(destination, 0)
        if (
            len(self._webhook_tasks) >= MAX_WEBHOOKS_IN_FLIGHT
            or busy >= MAX_WEBHOOKS_PER_DESTINATION
        ):
            self.counters.webhooks_dropped += 1  # a slow endpoint must not pile up memory
            return
        self._webhooks_per_destination[destination] = busy + 1
        task = asyncio.get_running_loop().create_task(
            self._call_webhook(webhook_call(hook, payload_bytes(emission.payload))),
            name="webhook",
        )
        # Owned here: kept until done, cancelled in close().
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)
        task.add_done_callback(lambda _: self._webhook_done(destination))

    def _webhook_done(self, destination: str) -> None:
        left = self._webhooks_per_destination.pop(destination, 1) - 1
        if left > 0:
            self._webhooks_per_destination[destination] = left

    async def _call_webhook(self, request: WebhookCall) -> None:
        try:
            await self.webhooks.call(request)
            self.counters.webhooks += 1
        except WebhookRefusedError as exc:  # never sent: the payload is not logged either
            self.counters.webhooks_refused += 1
            self._log_webhook_problem("dataplane.webhook_refused", request.url, str(exc))
        except Exception as exc:  # counted; a webhook never takes the node down
            self.counters.webhook_failures += 1
            self._log_webhook_problem("dataplane.webhook_failed", request.url, str(exc))

    def _log_webhook_problem(self, name: str, url: str, error: str) -> None:
        now = time.monotonic()
        last, unlogged = self._webhook_log.get(url, (-WEBHOOK_LOG_INTERVAL_S, 0))
        if now - last < WEBHOOK_LOG_INTERVAL_S:
            self._webhook_log[url] = (last, unlogged + 1)
            return
        self._webhook_log[url] = (now, 0)
        event(
            log,
            name,
            logging.WARNING,
            url=loggable_url(url),
            error=error,
            not_logged_since_last=unlogged,
        )

    async def close(self) -> None:
        for task in list(self._webhook_tasks):
            task.cancel()
        if self._webhook_tasks:
            await asyncio.gather(*self._webhook_tasks, return_exceptions=True)


def webhook_call(hook: WebhookActionSpec, body: bytes) -> WebhookCall:
    return WebhookCall(
        url=hook.url,
        method=hook.method,
        body=body,
        timeout_s=hook.timeout,
        allow_private_network=hook.allowPrivateNetwork,
    )


def webhook_destination(url: str) -> str:
    """Which receiver `url` reaches, for the per-destination cap: scheme, host, port."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or ''}"
    except ValueError:
        return url
