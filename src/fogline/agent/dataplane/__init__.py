"""The edge data plane on the node: sources, pipelines, actions, outbox, uplink.

`MqttBridge` (paho-mqtt) lives in `._mqtt` and is loaded only when the agent
has a broker; the pipeline engine only when a pipeline is configured.

Errors (webhooks only; everything else is counted, not raised):

    AgentError
      WebhookError            a call failed: network, status, deadline
        WebhookRefusedError   the destination is not public and the action
                              does not allow private networks; nothing sent
"""

from ._addresses import address_refusal, host_refusal, parse_ip_literal
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
from ._webhook import (
    HttpxWebhookCaller,
    WebhookCall,
    WebhookError,
    WebhookRefusedError,
    loggable_url,
    webhook_target,
)

__all__ = [
    "DataPlane",
    "DataPlaneCollector",
    "DataPlaneCounters",
    "HttpxWebhookCaller",
    "MemoryPublisher",
    "MemoryRecordSink",
    "MemoryWebhookCaller",
    "MqttSettings",
    "NodeDataPlane",
    "OutboxSink",
    "Publisher",
    "RecordSink",
    "WebhookCall",
    "WebhookCaller",
    "WebhookError",
    "WebhookRefusedError",
    "address_refusal",
    "host_refusal",
    "ingest_handler",
    "loggable_url",
    "parse_ip_literal",
    "parse_records",
    "record_from_mqtt",
    "webhook_target",
]
