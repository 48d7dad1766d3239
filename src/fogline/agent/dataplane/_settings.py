"""How the agent reaches its MQTT broker. Kept apart from the bridge so that
reading settings does not load paho-mqtt (a node without MQTT never does).

`mqtt://` is plain MQTT and only allowed to a broker on loopback (the demo):
credentials and readings would cross the network in clear. `mqtts://` is
MQTT over TLS (port 8883 by default), verifying the broker against `ca_file`
(else the system's trust store) and its name, optionally with a client
certificate.
"""

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from fogline.protocol import sensor_username_problem

from ._sensors import is_loopback


@dataclass(frozen=True, slots=True)
class MqttSettings:
    url: str = "mqtt://127.0.0.1:1883"
    protocol: int = 4  # 4 = MQTT 3.1.1, 5 = MQTT 5
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    ca_file: Path | None = None  # mqtts: the CA to verify the broker with
    cert_file: Path | None = None  # mqtts: the agent's client certificate ...
    key_file: Path | None = None  # ... and its key
    # The broker's password file the agent writes sensor accounts into, and
    # the broker's pid file (SIGHUP makes Mosquitto read the file again).
    sensor_password_file: Path | None = None
    broker_pid_file: Path | None = None
    # The broker's acl_file: where each sensor may publish (needs a password file).
    sensor_acl_file: Path | None = None

    @property
    def is_tls(self) -> bool:
        return urlparse(self.url).scheme == "mqtts"

    @property
    def host_port(self) -> tuple[str, int]:
        """Raises:
        ValueError: not an mqtt:// or mqtts:// URL, or plain MQTT off loopback.
        """
        parsed = urlparse(self.url)
        if parsed.scheme not in ("mqtt", "tcp", "mqtts") or not parsed.hostname:
            raise ValueError(
                f"MQTT URL must look like mqtt://host:port or mqtts://host:port, got {self.url!r}"
            )
        if parsed.scheme != "mqtts" and not is_loopback(parsed.hostname):
            raise ValueError(
                f"plain MQTT only to a broker on loopback (got {parsed.hostname}); "
                "use mqtts:// for a broker on the network"
            )
        return parsed.hostname, parsed.port or (8883 if parsed.scheme == "mqtts" else 1883)

    def check(self) -> None:
        """Check what can be checked before connecting.

        Raises:
            ValueError: a bad URL, TLS files given for plain MQTT, a client
                certificate without its key, a file that does not load, or
                a user name that cannot go into the broker's password file.
        """
        _ = self.host_port
        tls_files = (self.ca_file, self.cert_file, self.key_file)
        if not self.is_tls and any(tls_files):
            raise ValueError("a CA, certificate or key is for mqtts:// URLs only")
        if self.sensor_acl_file is not None and (
            self.sensor_password_file is None or not self.username
        ):
            raise ValueError(
                "an ACL file needs --sensor-password-file and --mqtt-username "
                "(the agent's own line in it)"
            )
        if self.sensor_password_file is not None and self.username:
            # The agent writes its own user name into the broker's password file.
            problem = sensor_username_problem(self.username)
            if problem:
                raise ValueError(f"MQTT user name {problem}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        if self.is_tls:
            self.ssl_context()

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings of an mqtts:// connection: the broker verified, TLS 1.2+.

        Raises:
            ValueError: the CA, certificate or key file does not load.
        """
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert_file is not None and self.key_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"MQTT TLS files: {exc}") from exc
        return context
