"""Runs the desired state's pipelines on the node and carries out what they emit.

Records arrive in batches (from MQTT or the HTTP ingest) and go through
every pipeline whose source matches. Emissions are acted on at once:
MQTT actions are handed to the broker client before the next batch
(the sub-millisecond path), webhooks run as owned tasks, and records for
the cloud are group-committed to the outbox once per batch.

Pipelines are built one by one: one that cannot be built (an invalid spec,
a model that is missing or does not load) is reported by name and keeps its
previous version if it had one, while the others are replaced. The models of
`infer` steps are loaded in a worker thread before the swap (`reconfigure`),
and the swap itself happens on the event loop between two batches, so a new
model version replaces one step's session while every other step keeps its
state (`Pipeline.replace_with`).

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
from fogline.agent._errors import AgentError
from fogline.agent.outbox import OutboxItem
from fogline.protocol import MAX_PAYLOAD_DEPTH, is_nested_deeper

from ._models import ModelSessions
from ._ports import Publisher, RecordSink, WebhookCaller, payload_bytes
from ._webhook import WebhookCall, WebhookRefusedError, loggable_url

if TYPE_CHECKING:
    from fogline.pipeline import Emission, Pipeline, PipelineError, PipelineSpec, WebhookActionSpec

log = logging.getLogger("fogline.agent.dataplane")
# Each in-flight call holds a task, a socket and at most a deadline's time:
# beyond the caps, new calls are dropped (and counted) rather than queued.
MAX_WEBHOOKS_IN_FLIGHT: Final = 16
# So that one slow receiver cannot take every slot from the others.
MAX_WEBHOOKS_PER_DESTINATION: Final = 4
# A failing or refused webhook is logged at most this often per URL (with
# how many were not logged): an output firing per record must not flood the log.
WEBHOOK_LOG_INTERVAL_S: Final = 60.0


class PipelinesFailedError(AgentError):
    """Some pipelines of the desired state could not be built; the others run.

    `failures` maps each such pipeline's name to the reason; the names in
    `kept` still run their previous version.
    """

    def __init__(self, failures: Mapping[str, str], kept: Sequence[str]) -> None:
        self.failures, self.kept = dict(failures), sorted(kept)
        super().__init__(
            "; ".join(
                f"pipeline {name!r} "
                f"{'keeps its previous version' if name in self.kept else 'is not running'}: "
                f"{reason}"
                for name, reason in sorted(self.failures.items())
            )
        )


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
    if is_nested_deeper(value, MAX_PAYLOAD_DEPTH - 1):  # as the HTTP ingest refuses it
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
        *,
        models: ModelSessions | None = None,
    ) -> None:
        self.publisher = publisher
        self.sink = sink
        self.webhooks = webhooks
        self.clock = clock
        # The model loader of infer steps; without a source they cannot be built.
        self.models = models if models is not None else ModelSessions(None)
        self.pipelines: dict[str, Pipeline] = {}
        self.counters = DataPlaneCounters()
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhooks_per_destination: dict[str, int] = {}
        self._webhook_log: dict[str, tuple[float, int]] = {}  # url -> (last logged, unlogged)

    # -- configuration ---------------------------------------------------------

    async def reconfigure(self, specs: Sequence[Mapping[str, Any] | PipelineSpec]) -> None:
        """`configure`, with the models of `infer` steps loaded in a worker
        thread first: the event loop keeps carrying records meanwhile.

        Raises:
            PipelinesFailedError: as `configure`.
        """
        if not specs and not self.pipelines:
            return
        validated, failures = self._validate(specs)
        await self.models.prepare(
            ref for spec in validated if not isinstance(spec, str) for ref in spec.models
        )
        self._install(validated, failures)

    def configure(self, specs: Sequence[Mapping[str, Any] | PipelineSpec]) -> None:
        """Replace the running pipelines with `specs` (manifest blocks, or
        specs already validated), keeping the state of
        unchanged steps (their open windows) across the change. Models not
        loaded yet load here, blocking (`reconfigure` loads them off the loop).

        Raises:
            PipelinesFailedError: some pipelines could not be built (an
                invalid spec, which the hub should have refused, or a model
                that does not load); every other pipeline was replaced.
        """
        if not specs and not self.pipelines:
            return  # no pipelines: the engine (and its imports) is not needed
        self._install(*self._validate(specs))

    def _validate(
        self, specs: Sequence[Mapping[str, Any] | PipelineSpec]
    ) -> tuple[list[PipelineSpec | str], dict[str, str]]:
        """The specs in order (a failed one by its name), and why those failed."""
        from fogline.pipeline import PipelineSpec, PipelineSpecError, validate_pipeline

        ordered: list[PipelineSpec | str] = []
        failures: dict[str, str] = {}
        for index, raw in enumerate(specs):
            if isinstance(raw, PipelineSpec):
                ordered.append(raw)
                continue
            try:
                ordered.append(validate_pipeline(raw))
            except PipelineSpecError as exc:
                name = raw.get("name") if isinstance(raw, Mapping) else None
                shown = name if isinstance(name, str) else f"pipelines[{index}]"
                ordered.append(shown)
                failures[shown] = _reason(exc)
        return ordered, failures

    def _install(self, ordered: list[PipelineSpec | str], failures: dict[str, str]) -> None:
        from fogline.pipeline import PipelineError, build_pipeline

        fresh: dict[str, Pipeline] = {}
        for item in ordered:
            if isinstance(item, str):
                name = item
            else:
                name = item.name
                current = self.pipelines.get(name)
                try:
                    fresh[name] = (
                        current.replace_with(item, model_loader=self.models)
                        if current
                        else build_pipeline(item, model_loader=self.models)
                    )
                    continue
                except PipelineError as exc:  # nothing moved: `current` is intact
                    failures[name] = _reason(exc)
            if name in self.pipelines:  # edge autonomy: the last working version runs on
                fresh[name] = self.pipelines[name]
        kept = [name for name in failures if name in fresh]
        self.pipelines = fresh
        self.models.keep_only(ref for p in fresh.values() for ref in p.spec.models)
        self._webhook_log.clear()  # keyed by URL: the old pipelines' URLs may be gone
        event(
            log,
            "dataplane.configured",
            pipelines=sorted(fresh),
            models=self.models.loaded(),
            failed=sorted(failures),
        )
        if failures:
            for name, reason in sorted(failures.items()):
                event(
                    log,
                    "dataplane.pipeline_failed",
                    logging.ERROR,
                    pipeline=name,
                    kept_previous=name in kept,
                    error=reason,
                )
            raise PipelinesFailedError(failures, kept)

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


def _reason(exc: PipelineError) -> str:
    """Why a pipeline failed, without repeating its name."""
    from fogline.pipeline import PipelineSpecError

    if isinstance(exc, PipelineSpecError) and exc.problems:
        return "; ".join(f"{path}: {why}" if path else why for path, why in exc.problems)
    return str(exc)


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
