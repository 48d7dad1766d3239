"""How the agent reaches its MQTT broker. Kept apart from the bridge so that
reading settings does not load paho-mqtt (a node without MQTT never does)."""

from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass(frozen=True, slots=True)
class MqttSettings:
    url: str = "mqtt://127.0.0.1:1883"
    protocol: int = 4  # 4 = MQTT 3.1.1, 5 = MQTT 5
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30

    @property
    def host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.url)
        if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
            raise ValueError(f"MQTT URL must look like mqtt://host:port, got {self.url!r}")
        return parsed.hostname, parsed.port or 1883
