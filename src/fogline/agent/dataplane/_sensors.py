"""Who may send readings to the node: the ingest token check and the
broker's sensor accounts, both from the desired document's `sensors` block.

The ingest is closed unless a request carries `Authorization: Bearer TOKEN`
whose SHA-256 is declared in the deployment. With no token declared it is
open only while the local endpoint listens on loopback (the demo): anything
reachable from the network without a token is closed rather than open.

The sensor accounts go into the Mosquitto password file the node's broker
reads (`password_file`), one `username:$7$...` line each, written atomically
and then the broker is sent SIGHUP, which makes Mosquitto read it again. The
agent's own account, when it logs in with a password, is always the file's
first line: a deployment cannot lock the agent out of its own broker.
"""

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fogline._durable import write_atomic
from fogline._log import event
from fogline.agent._errors import AgentError
from fogline.agent._local import Scope
from fogline.protocol import SensorAccess, SensorUser
from fogline.security import hash_sensor_password, sensor_password_matches

log = logging.getLogger("fogline.agent.sensors")

# A bearer token longer than this is no token of ours: refused unhashed.
MAX_TOKEN_CHARS: Final = 512
MAX_PID_FILE_BYTES: Final = 64
# Mosquitto reads the file through its group; nobody else may.
PASSWORD_FILE_MODE: Final = 0o640


class SensorAccessError(AgentError):
    """The broker's sensor accounts could not be put in place: the password
    file is not writable, the broker could not be told to reload, or the
    deployment declares accounts and the agent was given no password file."""


def is_loopback(host: str) -> bool:
    """Whether `host` (an address the agent listens on) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def bearer_token(scope: Scope) -> str | None:
    """The token of the request's `Authorization: Bearer` header, if it has one."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class IngestGuard:
    """Decides whether a request to the local ingest may reach a pipeline."""

    def __init__(self, *, listen_host: str) -> None:
        self.listen_host = listen_host
        self.open_without_token = is_loopback(listen_host)
        self.digests: tuple[str, ...] = ()
        self.refused = 0  # requests answered 401

    def use(self, access: SensorAccess | None) -> None:
        self.digests = access.ingest_digests if access is not None else ()

    def refusal(self, scope: Scope) -> str | None:
        """Why the request is refused (the body of a 401), or None to let it in.

        Never names the token it was given: the reason is the same whatever
        was sent, and nothing of the token reaches a log or an answer.
        """
        if not self.digests:
            if self.open_without_token:
                return None
            return (
                f"the ingest listens on {self.listen_host}, which is not loopback, and no "
                "deployment declares spec.sensors.ingest.tokens: it accepts no request"
            )
        token = bearer_token(scope)
        if token is None or len(token) > MAX_TOKEN_CHARS:
            return "a valid ingest token is required (Authorization: Bearer TOKEN)"
        presented = hashlib.sha256(token.encode()).hexdigest()
        matched = False
        for digest in self.digests:  # every digest, always: no early exit to time
            matched |= hmac.compare_digest(presented, digest)
        return None if matched else "a valid ingest token is required (Authorization: Bearer TOKEN)"


class SensorAccountFiles:
    """Writes the broker's password file (and ACL file) from the declared sensor accounts."""

    def __init__(
        self,
        path: Path,
        *,
        broker_pid_file: Path | None,
        agent_account: tuple[str, str] | None,
        acl_path: Path | None = None,
        agent_username: str | None = None,
    ) -> None:
        """`agent_account` is the agent's own (username, password) on this
        broker; `agent_username` its user name also when it logs in with a
        certificate. With `acl_path`, each sensor may publish only to its
        `publish` filters, the agent to everything."""
        self.path = path
        self.acl_path = acl_path
        self.broker_pid_file = broker_pid_file
        self._agent_account = agent_account
        self._agent_username = agent_account[0] if agent_account else agent_username
        self._agent_line: str | None = None

    async def write(self, users: Sequence[SensorUser]) -> bool:
        """Put `users` (and the agent's own account) in the files; tell the
        broker when they changed. Returns whether they changed.

        Raises:
            SensorAccessError: a file could not be written, or the broker
                not told to reload.
        """
        return await asyncio.to_thread(self._write, tuple(users))

    def _write(self, users: tuple[SensorUser, ...]) -> bool:
        sensors: list[SensorUser] = []
        for user in users:
            if user.username == self._agent_username:
                # The agent's account is not a sensor's to take over.
                event(
                    log,
                    "sensors.account_skipped",
                    logging.ERROR,
                    username=user.username,
                    reason="it is the agent's own MQTT user name",
                )
                continue
            sensors.append(user)
        lines: list[str] = []
        own = self._own_line()
        if own is not None:
            lines.append(own)
        lines += [f"{user.username}:{user.password_hash}" for user in sensors]
        changed = _replace(self.path, ("\n".join(lines) + "\n").encode() if lines else b"")
        if self.acl_path is not None:
            changed |= _replace(self.acl_path, self._acl(sensors))
        if not changed:
            return False
        self._reload_broker()
        event(log, "sensors.accounts_written", path=str(self.path), sensors=len(sensors))
        return True

    def _acl(self, sensors: Sequence[SensorUser]) -> bytes:
        """Mosquitto's ACL file: the agent reads and writes everything (its
        pipelines subscribe, its actions publish); a sensor only publishes,
        to its own filters. Whatever no line allows is refused."""
        parts = ["# Written by the fogline agent from the desired state; edits are replaced.\n"]
        if self._agent_username is not None:
            parts.append(f"user {self._agent_username}\ntopic readwrite #\n")
        for user in sensors:
            rules = "".join(f"topic write {topic}\n" for topic in user.publish_filters)
            parts.append(f"user {user.username}\n{rules}")
        return "\n".join(parts).encode()

    def _own_line(self) -> str | None:
        if self._agent_account is None:
            return None
        if self._agent_line is None:
            username, password = self._agent_account
            # Keep the line already in the file when it still matches: a new
            # salt at every start would rewrite the file and reload the broker.
            self._agent_line = self._line_in_file(username, password) or (
                f"{username}:{hash_sensor_password(password)}"
            )
        return self._agent_line

    def _line_in_file(self, username: str, password: str) -> str | None:
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            name, _, password_hash = line.partition(":")
            if name == username and sensor_password_matches(password, password_hash):
                return line
        return None

    def _reload_broker(self) -> None:
        if self.broker_pid_file is None:
            event(
                log,
                "sensors.broker_not_reloaded",
                logging.WARNING,
                path=str(self.path),
                reason="no --broker-pid-file: the broker reads the file when it restarts",
            )
            return
        try:
            with open(self.broker_pid_file, "rb") as file:
                pid = int(file.read(MAX_PID_FILE_BYTES).strip())
            if pid <= 1:
                raise ValueError(f"pid {pid}")
            os.kill(pid, signal.SIGHUP)  # Mosquitto reads its password file again
        except (OSError, ValueError) as exc:
            raise SensorAccessError(
                f"cannot tell the broker to reload {self.path} "
                f"(--broker-pid-file {self.broker_pid_file}): {exc}"
            ) from exc


def _replace(path: Path, content: bytes) -> bool:
    """Write `content` to `path` unless it holds it already; whether it changed.

    Raises:
        SensorAccessError: `path` cannot be read or written.
    """
    group: int | None = None
    try:
        if path.read_bytes() == content:
            return False
        # The broker reads the file through its group (the operator made the
        # file with it): the new file keeps that group, readable by it only.
        group = path.stat().st_gid
    except FileNotFoundError:
        pass  # new: the agent's own, 0600 under its umask
    except OSError as exc:
        raise SensorAccessError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        write_atomic(path, content, mode=PASSWORD_FILE_MODE, group=group, make_parents=False)
    except OSError as exc:
        raise SensorAccessError(f"{path}: cannot write: {exc.strerror}") from exc
    return True
