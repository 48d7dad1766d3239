"""`AgentConfig`, and what the agent claims on the host from it before it
starts anything: its data dir, kept private, and its local endpoint's socket.
"""

import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import AgentError
from .dataplane import MqttSettings
from .supervisor import ModuleUser


@dataclass(frozen=True, slots=True)
class AgentConfig:
    hub_url: str
    ca_path: Path
    data_dir: Path
    claim: str | None = None
    # Read only when the node must enroll (the file may be gone once it has).
    claim_file: Path | None = None
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    local_host: str = "127.0.0.1"
    local_port: int = 9271
    report_interval_s: float = 10.0
    mqtt: MqttSettings | None = None
    outbox_max_bytes: int = 256 * 1024 * 1024
    drift_interval_s: float = 30.0
    # Who modules run as; None: the agent's own user (no isolation from it).
    module_user: ModuleUser | None = None
    # A renewal asks for a certificate for a new key (False: the same key).
    renew_new_key: bool = True

    def __post_init__(self) -> None:
        # Absolute from the start: the agent hands paths under data_dir to
        # modules (FOGLINE_CONFIG, HOME, their workdir), which run in their
        # own install directory, where a path relative to the agent's working
        # directory (`--data-dir ./node`) names nothing. abspath, not resolve:
        # a symlinked data dir keeps the name the operator gave it.
        for name in ("data_dir", "ca_path"):
            path = Path(os.path.abspath(os.path.expanduser(getattr(self, name))))
            object.__setattr__(self, name, path)  # frozen: only here, before anyone reads it


def default_name() -> str:
    """The hostname as a device name: lowercase letters, digits and dashes."""
    cleaned = "".join(c if c.isalnum() else "-" for c in socket.gethostname().lower())
    return cleaned.strip("-")[:63] or "edge-node"


def make_data_dir(config: AgentConfig) -> None:
    """Create the data dir, private to the agent.

    Private, unless modules run as another user: then others may pass
    through (not list) on the way to what is opened to them (install,
    config, their data dir); the rest is kept 0700/0600 by the umask.

    Raises:
        OSError: the data dir cannot be made or its permissions set.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    isolated = config.module_user is not None and not config.module_user.is_agent_user
    os.chmod(config.data_dir, 0o711 if isolated else 0o700)
    if isolated:
        close_to_others(config.data_dir)


def close_to_others(data_dir: Path) -> None:
    """Take group and other permissions off what the data dir holds (but the
    modules' own dirs), so that nothing an older agent made under another
    umask stays reachable; what modules need is opened again as they start."""
    for entry in data_dir.iterdir():
        info = entry.lstat()
        if entry.name == "module-data" or stat.S_ISLNK(info.st_mode):
            continue
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(entry, stat.S_IMODE(info.st_mode) & 0o700)


def bind_local(config: AgentConfig) -> socket.socket:
    """The local endpoint's socket, bound and listening (non-blocking).

    Raises:
        AgentError: the address cannot be bound (the port is taken).
    """
    host, port = config.local_host, config.local_port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AgentError(f"cannot listen on {host}:{port} (--local-port): {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock
