"""The data plane as the agent runs it: outbox, uplink, broker, ingest, ticks."""

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fogline._log import event
from fogline.agent.outbox import Outbox, OutboxItem, OutboxStats
from fogline.agent.uplink import Backoff, Uplink
from fogline.protocol import DesiredStateDoc, OutboxReport, SensorUser

from ._dataplane import DataPlane
from ._models import ModelSessions, ModelSource
from ._sensors import IngestGuard, SensorAccessError, SensorAccountFiles
from ._settings import MqttSettings
from ._webhook import HttpxWebhookCaller

if TYPE_CHECKING:
    from fogline.pipeline import PipelineSpec

    from ._mqtt import MqttBridge
from ._ports import MemoryPublisher

log = logging.getLogger("fogline.agent.sensors")
TICK_S: Final = 0.1
# Anomalies arrive one by one: half a second lets them share a request.
UPLINK_LINGER_S: Final = 0.5
# Records per uplink batch (issue #18): a window's summaries of a thousand
# sensors then share one batch, and format 2 writes their sensor names and
# constants once. Payload bytes stay bounded by the uplink's batch_bytes.
UPLINK_BATCH_RECORDS: Final = 2000


class OutboxSink:
    """Group-commits a batch of records, then wakes the uplink."""

    def __init__(self, outbox: Outbox, uplink: Uplink) -> None:
        self.outbox, self.uplink = outbox, uplink

    async def put_many(self, items: Sequence[OutboxItem]) -> None:
        await asyncio.to_thread(self.outbox.put_many, items)
        self.uplink.notify()


class NoBroker(MemoryPublisher):
    """Stands in when the agent has no --mqtt: a pipeline that needs it is refused."""


class NodeDataPlane:
    def __init__(
        self,
        data_dir: Path,
        outbox_max_bytes: int,
        mqtt: MqttSettings | None,
        transport: Any,
        *,
        models: ModelSource | None = None,
        ingest_host: str = "127.0.0.1",
    ) -> None:
        """`models` finds the files of installed model releases for `infer`
        steps; `ingest_host` is where the local ingest listens (loopback: open
        while no deployment declares an ingest token)."""
        self.outbox = Outbox.open(data_dir / "outbox.db", max_bytes=outbox_max_bytes)
        self.transport = transport
        self.uplink = Uplink(
            self.outbox,
            transport,
            batch_records=UPLINK_BATCH_RECORDS,
            backoff=Backoff(initial_s=0.5, max_s=30.0),
            linger_s=UPLINK_LINGER_S,
        )
        self.webhooks = HttpxWebhookCaller()
        self.mqtt_settings = mqtt
        self.last_outbox_stats: OutboxStats | None = None
        self.engine = DataPlane(
            NoBroker(),
            OutboxSink(self.outbox, self.uplink),
            self.webhooks,
            models=ModelSessions(models),
        )
        self.ingest_guard = IngestGuard(listen_host=ingest_host)
        self.sensor_accounts: SensorAccountFiles | None = None
        if mqtt is not None and mqtt.sensor_password_file is not None:
            own = (mqtt.username, mqtt.password) if mqtt.username and mqtt.password else None
            self.sensor_accounts = SensorAccountFiles(
                mqtt.sensor_password_file,
                broker_pid_file=mqtt.broker_pid_file,
                agent_account=own,
                acl_path=mqtt.sensor_acl_file,
                agent_username=mqtt.username,
            )
        self._accounts_written = False
        self.bridge: MqttBridge | None = None
        if mqtt is not None:
            from ._mqtt import MqttBridge as Bridge  # paho-mqtt only on nodes that use MQTT

            self.bridge = Bridge(mqtt, self.engine.on_mqtt_batch)
            self.engine.publisher = self.bridge

    async def apply(self, doc: DesiredStateDoc) -> None:
        """Applier for the sync loop: run the document's pipelines.

        Raises:
            ValueError: a pipeline needs MQTT and the agent has no broker configured.
            SensorAccessError: the sensor accounts could not be put in place.
            PipelinesFailedError: some pipelines could not be built (an invalid
                spec, a model that is not installed or does not load); the
                others run.
        """
        # Access first: whatever fails below, the tokens and accounts in force
        # are the document's, never a previous document's.
        access = doc.document.sensors
        self.ingest_guard.use(access)
        access_error: SensorAccessError | None = None
        try:
            await self.write_sensor_accounts(access.mqtt_users if access else ())
        except SensorAccessError as exc:  # the pipelines still change; raised after them
            event(log, "sensors.accounts_failed", logging.ERROR, error=str(exc))
            access_error = exc
        specs: list[PipelineSpec | Mapping[str, Any]] = []
        if doc.document.pipelines:
            # The pipeline package reads the blocks the desired document keeps
            # opaque (see fogline.protocol); imported only when there are any.
            from fogline.pipeline import PipelineSpecError, validate_pipeline

            for raw in doc.document.pipelines:
                try:
                    specs.append(validate_pipeline(raw))
                except PipelineSpecError:
                    specs.append(raw)  # the engine reports it, with the others' problems
        valid = [spec for spec in specs if not isinstance(spec, Mapping)]
        needs_mqtt = [
            spec.name
            for spec in valid
            if spec.source.mqtt is not None
            or any(o.action is not None and o.action.mqtt is not None for o in spec.outputs)
        ]
        if needs_mqtt and self.bridge is None:
            raise ValueError(f"pipelines {needs_mqtt} need MQTT; start the agent with --mqtt URL")
        try:
            await self.engine.reconfigure(specs)
        finally:  # the pipelines that were built need their topics, whatever failed
            if self.bridge is not None:
                self.bridge.set_filters(self.engine.mqtt_filters())
        if access_error is not None:
            raise access_error

    async def write_sensor_accounts(self, users: Sequence[SensorUser]) -> None:
        """Put the declared sensor accounts in the broker's password file.

        Raises:
            SensorAccessError: accounts are declared and the agent has no
                --sensor-password-file, or the file could not be written or
                the broker told to reload.
        """
        if self.sensor_accounts is None:
            if users:
                raise SensorAccessError(
                    f"the deployment declares {len(users)} MQTT sensor accounts and the agent "
                    "has no --sensor-password-file to write them to"
                )
            return
        await self.sensor_accounts.write(users)
        self._accounts_written = True

    async def outbox_stats(self) -> OutboxStats:
        """The outbox's figures, read in a worker thread.

        The read waits for the outbox lock, which a commit (an fsync: ms, tens
        of ms on an SD card) may hold, and must not stall the event loop that
        carries local actions meanwhile. Kept for the next metrics scrape.
        """
        self.last_outbox_stats = await asyncio.to_thread(self.outbox.stats)
        return self.last_outbox_stats

    async def outbox_report(self) -> OutboxReport:
        stats = await self.outbox_stats()
        return OutboxReport(
            depth=stats.depth,
            bytes=stats.bytes,
            max_bytes=stats.max_bytes,
            oldest_age_s=stats.oldest_age_s,
            dropped_quota=stats.dropped_quota,
            expired=stats.expired,
            dead_lettered=stats.dead_lettered,
            dropped_by_priority={
                str(p.priority): p.dropped_quota for p in stats.by_priority if p.dropped_quota
            },
            reset_after_corruption=stats.was_reset_after_corruption,
        )

    def pipeline_totals(self) -> tuple[int, int]:
        """(errors, dropped) summed over every pipeline's steps and outputs
        since the agent started: what the health report carries for canary
        analysis (`pipeline-errors`, `pipeline-drops`). Dropped counts the
        records a step or output shed (dedupe, sample, detectors, windows,
        an output's `when`), arrived too late for their window, or a rate
        limit turned away."""
        errors = dropped = 0
        for pipeline in self.engine.pipelines.values():
            for counts in pipeline.counters().values():
                errors += counts.get("errors", 0)
                dropped += (
                    counts.get("dropped", 0) + counts.get("late", 0) + counts.get("rate_limited", 0)
                )
        return errors, dropped

    async def run(self) -> None:
        if not self._accounts_written and self.sensor_accounts is not None:
            # No desired state yet: the broker still gets a file, holding the
            # agent's own account (and no sensor's) until one arrives.
            try:
                await self.write_sensor_accounts(())
            except SensorAccessError as exc:  # tried again at the next apply
                event(log, "sensors.accounts_failed", logging.ERROR, error=str(exc))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.uplink.run(), name="uplink")
            tg.create_task(self._tick_forever(), name="pipeline-ticks")
            if self.bridge is not None:
                tg.create_task(self.bridge.run(), name="mqtt")

    async def _tick_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(TICK_S)
                await self.engine.tick()
        finally:
            # A clean stop closes open windows so their partial summaries are kept.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.engine.flush())

    async def close(self) -> None:
        await self.engine.close()
        await self.webhooks.aclose()
        self.outbox.close()


class DataPlaneCollector:
    """Data-plane and outbox figures, read at scrape time.

    prometheus_client is imported at the first scrape (see fogline.agent._metrics).
    """

    def __init__(self, node: NodeDataPlane) -> None:
        self.node = node

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters = self.node.engine.counters
        family = CounterMetricFamily(
            "fogline_agent_dataplane", "Data-plane events by kind", labels=["kind"]
        )
        if self.node.bridge is not None:
            family.add_metric(["mqtt_received"], self.node.bridge.received)
            # Shed by the bridge's backlog bound: the node fell behind its sensors.
            family.add_metric(["mqtt_dropped"], self.node.bridge.dropped)
        # Requests the ingest refused (401): a sensor with a stale token, or a probe.
        family.add_metric(["ingest_unauthorized"], self.node.ingest_guard.refused)
        for kind in (
            "records_in",
            "bad_payloads",
            "uplinked",
            "published",
            "publish_failures",
            "webhooks",
            "webhook_failures",
            "webhooks_dropped",
            "webhooks_refused",
        ):
            family.add_metric([kind], getattr(counters, kind))
        yield family
        body_bytes = getattr(self.node.transport, "body_bytes", None)
        if isinstance(body_bytes, dict):
            # What the uplink's batches cost compressed, by batch format.
            sent = CounterMetricFamily(
                "fogline_agent_uplink_body_bytes",
                "Compressed batch bytes sent to the hub, resends included",
                labels=["format"],
            )
            for version, count in sorted(body_bytes.items()):
                sent.add_metric([version], count)
            yield sent
        # Fresh: the agent's /metrics refreshes it (off the loop) before collecting.
        stats = self.node.last_outbox_stats or self.node.outbox.stats()
        yield GaugeMetricFamily(
            "fogline_agent_outbox_depth", "Records waiting for the hub", value=stats.depth
        )
        yield GaugeMetricFamily(
            "fogline_agent_outbox_bytes", "Payload bytes waiting", value=stats.bytes
        )
        dropped = CounterMetricFamily(
            "fogline_agent_outbox_dropped", "Records dropped", labels=["reason"]
        )
        dropped.add_metric(["quota"], stats.dropped_quota)
        dropped.add_metric(["expired"], stats.expired)
        dropped.add_metric(["dead_letter"], stats.dead_lettered)
        yield dropped
        steps = CounterMetricFamily(
            "fogline_agent_pipeline_step",
            "Pipeline step counters",
            labels=["pipeline", "step", "counter"],
        )
        for name, pipeline in self.node.engine.pipelines.items():
            for step, counts in pipeline.counters().items():
                for counter, value in counts.items():
                    steps.add_metric([name, step, counter], value)
        yield steps
