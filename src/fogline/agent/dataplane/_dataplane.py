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
from typing import TYPE_CHECKING, Any

import orjson

from fogline._log import event
from fogline.agent.outbox import OutboxItem

from ._ports import Publisher, RecordSink, WebhookCaller, payload_bytes

if TYPE_CHECKING:
    from fogline.pipeline import Emission, Pipeline

log = logging.getLogger("fogline.agent.dataplane")
MAX_WEBHOOKS_IN_FLIGHT = 16


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
        if len(self._webhook_tasks) >= MAX_WEBHOOKS_IN_FLIGHT:
            self.counters.webhooks_dropped += 1  # a slow endpoint must not pile up memory
            return
        task = asyncio.get_running_loop().create_task(
            self._call_webhook(hook.url, hook.method, payload_bytes(emission.payload)),
            name="webhook",
        )
        # Owned here: kept until done, cancelled in close().
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

    async def _call_webhook(self, url: str, method: str, body: bytes) -> None:
        try:
            await self.webhooks.call(url, method, body)
            self.counters.webhooks += 1
        except Exception as exc:  # counted; a webhook never takes the node down
            self.counters.webhook_failures += 1
            event(log, "dataplane.webhook_failed", logging.WARNING, url=url, error=str(exc))

    async def close(self) -> None:
        for task in list(self._webhook_tasks):
            task.cancel()
        if self._webhook_tasks:
            await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
