"""The edge data plane on the node: sources, pipelines, actions, outbox, uplink.

`MqttBridge` (paho-mqtt) lives in `._mqtt` and is loaded only when the agent
has a broker; the pipeline engine only when a pipeline is configured.

Errors (pipelines that cannot be built, and webhooks; everything else is
counted, not raised):

    AgentError
      PipelinesFailedError    some pipelines of the desired state could not be
                              built (invalid, or an infer step's model is not
                              installed or does not load); the others run
      SensorAccessError       the broker's sensor accounts could not be put in
                              place (password file, broker reload); the
                              pipelines still run
      WebhookError            a call failed: network, status, deadline
        WebhookRefusedError   the destination is not public and the action
                              does not allow private networks; nothing sent

The models of `infer` steps are files of installed `kind: model` releases
(`InstalledModels`), loaded off the event loop (`ModelSessions`).
"""

from ._addresses import address_refusal, host_refusal, parse_ip_literal
from ._dataplane import DataPlane, DataPlaneCounters, PipelinesFailedError, record_from_mqtt
from ._ingest import ingest_handler, parse_records
from ._models import InstalledModels, InstalledReleases, ModelSessions, ModelSource
from ._node import DataPlaneCollector, NodeDataPlane, OutboxSink
from ._ports import (
    MemoryPublisher,
    MemoryRecordSink,
    MemoryWebhookCaller,
    Publisher,
    RecordSink,
    WebhookCaller,
)
from ._sensors import IngestGuard, SensorAccessError, SensorAccountFiles
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
    "IngestGuard",
    "InstalledModels",
    "InstalledReleases",
    "MemoryPublisher",
    "MemoryRecordSink",
    "MemoryWebhookCaller",
    "ModelSessions",
    "ModelSource",
    "MqttSettings",
    "NodeDataPlane",
    "OutboxSink",
    "PipelinesFailedError",
    "Publisher",
    "RecordSink",
    "SensorAccessError",
    "SensorAccountFiles",
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
