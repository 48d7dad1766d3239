"""The edge data plane on the node: sources, pipelines, actions, outbox, uplink."""

from ._dataplane import DataPlane, DataPlaneCounters, record_from_mqtt
from ._ingest import ingest_handler, parse_records
from ._mqtt import MqttBridge, MqttSettings
from ._node import DataPlaneCollector, NodeDataPlane, OutboxSink
from ._ports import (
    MemoryPublisher,
    MemoryRecordSink,
    MemoryWebhookCaller,
    Publisher,
    RecordSink,
    WebhookCaller,
)

__all__ = [
    "DataPlane",
    "DataPlaneCollector",
    "DataPlaneCounters",
    "MemoryPublisher",
    "MemoryRecordSink",
    "MemoryWebhookCaller",
    "MqttBridge",
    "MqttSettings",
    "NodeDataPlane",
    "OutboxSink",
    "Publisher",
    "RecordSink",
    "WebhookCaller",
    "ingest_handler",
    "parse_records",
    "record_from_mqtt",
]
