"""`fogline hub serve`: prepare the data directory and run the app over TLS."""

import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn

from fogline._lifetime import die_with_parent
from fogline._log import configure_logging, event
from fogline.security import ADMIN_PREFIX

from ._app import create_app
from ._datadir import HubFiles, prepare_data_dir, save_admin_token
from ._db import make_engine, make_session_factory, sqlite_url, upgrade_schema
from ._hot_path import DeviceHotPath
from ._releases import ArtifactStore
from ._state import HubSettings, HubState
from ._store import ensure_admin_token
from ._tls import ClientCertHttpToolsProtocol

log = logging.getLogger("fogline.hub")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    data_dir: Path
    db_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    sans: list[str] = field(default_factory=list)
    settings: HubSettings = field(default_factory=HubSettings)
    log_level: str = "info"
    # Processes serving the port. One Python process uses one core; each
    # worker has its own report writer and long-poll watcher, and the
    # database keeps them consistent (as it does for replicas).
    workers: int = 1


@dataclass(frozen=True, slots=True)
class BuiltHub:
    state: HubState
    files: HubFiles
    new_admin_token: str | None  # set only on the start that created it


def open_state(options: ServeOptions, files: HubFiles) -> HubState:
    """A hub process's state over a prepared data directory and schema."""
    engine = make_engine(options.db_url or sqlite_url(options.data_dir))
    return HubState(
        engine,
        make_session_factory(engine),
        files.ca,
        options.settings,
        artifacts_dir=options.data_dir / "artifacts",
    )


def build_hub(options: ServeOptions) -> BuiltHub:
    """Everything but the listening socket: data directory, schema, state."""
    files = prepare_data_dir(options.data_dir, options.sans)
    state = open_state(options, files)
    upgrade_schema(state.engine)
    swept = ArtifactStore(options.data_dir / "artifacts").sweep_partial_uploads()
    if swept:
        event(log, "hub.swept_partial_uploads", count=swept)
    with state.transaction() as session:
        token = ensure_admin_token(session, ADMIN_PREFIX)
    if token is not None:
        save_admin_token(files.admin_token, token.token)
        # The path only: a token on stdout or in the log ends up in whatever
        # keeps them (journald, a log shipper). See _admin.py.
        event(log, "hub.admin_token_created", path=str(files.admin_token))
    return BuiltHub(state, files, token.token if token else None)


class HubServer(uvicorn.Server):
    """uvicorn, plus: on SIGTERM/SIGINT, long-polls answer at once (304) instead
    of holding the graceful shutdown for their whole wait."""

    def __init__(self, config: uvicorn.Config, state: HubState) -> None:
        super().__init__(config)
        self._state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._state.notifier.close()
        super().handle_exit(sig, frame)


def serve(options: ServeOptions) -> None:
    configure_logging(options.log_level)
    hub = build_hub(options)
    state, files = hub.state, hub.files
    event(
        log,
        "hub.starting",
        host=options.host,
        port=options.port,
        data_dir=str(options.data_dir),
        db=state.engine.dialect.name,
        workers=options.workers,
    )
    if options.workers <= 1:
        started = _run_server(state, files, options, sockets=None)
        sys.exit(0 if started else 1)
    state.engine.dispose()  # the workers open their own connections
    sys.exit(_run_workers(options, files))


def _uvicorn_config(state: HubState, files: HubFiles, options: ServeOptions) -> uvicorn.Config:
    return uvicorn.Config(
        # Device reports skip FastAPI's routing (see _hot_path.py).
        DeviceHotPath(create_app(state), state),
        host=options.host,
        port=options.port,
        # uvloop's TLS and the httptools parser are C: with them one hub core
        # serves several times the device requests (BENCHMARKS.md, hub scale).
        loop="uvloop",
        http=ClientCertHttpToolsProtocol,
        ssl_keyfile=str(files.tls_key),
        ssl_certfile=str(files.tls_cert),
        ssl_ca_certs=str(files.ca_cert),
        # Optional at the TLS layer so operators can use tokens on the same
        # port; the device API itself refuses requests without a certificate.
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        # The hub terminates TLS itself: X-Forwarded-For from a client on the
        # same host must not rename the caller.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        # Devices keep their mTLS connection between reports: closing it sooner
        # than they report makes every report pay a new TLS handshake.
        timeout_keep_alive=int(max(30.0, options.settings.report_interval_s * 3)),
    )


def _run_server(
    state: HubState, files: HubFiles, options: ServeOptions, sockets: list[socket.socket] | None
) -> bool:
    """Serve until told to stop; False if the server never started."""
    server = HubServer(_uvicorn_config(state, files, options), state)
    try:
        server.run(sockets=sockets)
    finally:
        state.engine.dispose()
    return bool(server.started)


def _run_workers(options: ServeOptions, files: HubFiles) -> int:
    """Fork `options.workers` servers on one listening socket and supervise
    them; returns the hub's exit code.

    SIGTERM/SIGINT stop every worker gracefully. A worker that dies on its
    own stops the others and the hub exits 1, so whatever supervises the hub
    restarts it whole. Workers die with the hub even if it is SIGKILLed.
    """
    listener = socket.create_server(
        (options.host, options.port), backlog=2048, family=_family(options.host)
    )
    parent = os.getpid()
    workers: set[int] = set()
    for index in range(options.workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                die_with_parent(parent, signal.SIGTERM)
                state = open_state(options, files)
                event(log, "hub.worker_started", worker=index, pid=os.getpid())
                code = 0 if _run_server(state, files, options, sockets=[listener]) else 1
            finally:
                os._exit(code)
        workers.add(pid)
    listener.close()
    return _supervise(workers)


def _supervise(workers: set[int]) -> int:
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while workers:
        pid, status = os.wait()
        workers.discard(pid)
        if not stopping:
            event(
                log,
                "hub.worker_exited",
                logging.ERROR,
                pid=pid,
                exit_code=os.waitstatus_to_exitcode(status),
            )
            code = 1
            stop(signal.SIGTERM, None)
    return code


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
