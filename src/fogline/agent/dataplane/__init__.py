"""The edge data plane on the node: sources, pipelines, actions, outbox, uplink.

`MqttBridge` (paho-mqtt) lives in `._mqtt` and is loaded only when the agent
has a broker; the pipeline engine only when a pipeline is configured.
"""

from ._dataplane import DataPlane, DataPlaneCounters, record_from_mqtt
from ._ingest import ingest_handler, parse_records
from ._node import DataPlaneCollector, NodeDataPlane, OutboxSink
from ._ports import (
    MemoryPublisher,
    MemoryRecordSink,
    MemoryWebhookCaller,
    Publisher,
    RecordSink,
    WebhookCaller,
)
from ._settings import MqttSettings

__all__ = [
    "DataPlane",
    "DataPlaneCollector",
    "DataPlaneCounters",
    "MemoryPublisher",
    "MemoryRecordSink",
    "MemoryWebhookCaller",
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
