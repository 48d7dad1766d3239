"""`fogline hub serve`: prepare the data directory and run the app over TLS."""

import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import sys
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Final

import uvicorn

from fogline._errors import FoglineError
from fogline._hub_parent import exec_parent, supervise
from fogline._lifetime import die_with_parent
from fogline._log import configure_logging, event
from fogline._malloc import cap_arenas, fix_mmap_threshold
from fogline.security import ADMIN_PREFIX

from ._app import create_app
from ._connections import ConnectionLimits, ConnectionTable
from ._datadir import HubFiles, prepare_data_dir, save_admin_token
from ._db import make_engine, make_session_factory, sqlite_url, upgrade_schema
from ._hot_path import DeviceHotPath
from ._http_guard import GuardedHttpToolsProtocol
from ._listener import (
    Acceptor,
    Listener,
    ShedCounter,
    bind_listener,
    fit_limits,
    raise_open_file_limit,
)
from ._metrics import PlainHttpMetricsOnly
from ._state import HubSettings, HubState
from ._tickets import (
    DEFAULT_TICKET_PERIOD_S,
    TICKET_SECRET_FILE,
    TicketKeys,
    TicketSecretError,
    load_or_create_ticket_secret,
)
from ._tls import ReloadingServerTls
from ._tokens import ensure_admin_token
from ._trust import FleetTrust
from ._tuf import ONLINE_KEY_FILE
from .releases import ArtifactStore

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
    # Timeouts and connection caps, per process (see _connections.py).
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    # A plain-HTTP listener that serves /metrics only, without a token
    # (loopback unless the operator says otherwise; see cli/_hub.py).
    metrics_listen: tuple[str, int] | None = None
    # Opens the CA key encrypted at rest (--ca-key-passphrase-file).
    ca_key_passphrase: bytes | None = field(default=None, repr=False)
    # TLS session tickets, their keys shared by every worker and replica on
    # this data directory and rotated each period (see _tickets.py); off:
    # no tickets, a full handshake per connection (--no-tls-tickets).
    tls_tickets: bool = True
    ticket_period_s: float = DEFAULT_TICKET_PERIOD_S
    # Stateful tickets (--tls-session-cache N): each worker keeps up to N
    # sessions in memory and a ticket is only a session id; 0: stateless
    # tickets with the shared keys above.
    tls_session_cache: int = 0


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
        trust=FleetTrust(files.root, files.passphrase),
        tuf_key_path=options.data_dir / ONLINE_KEY_FILE,
    )


def build_hub(options: ServeOptions, *, migrate_apart: bool = False) -> BuiltHub:
    """Everything but the listening socket: data directory, schema, state.

    `migrate_apart`: upgrade the schema in a child process (see
    upgrade_schema_apart), as `serve` does; else in this one.
    """
    files = prepare_data_dir(options.data_dir, options.sans, options.ca_key_passphrase)
    state = open_state(options, files)
    if migrate_apart:
        upgrade_schema_apart(options.db_url or sqlite_url(options.data_dir))
    else:
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
    """uvicorn, with our gate in front (see _listener.py), and: on
    SIGTERM/SIGINT, long-polls answer at once (304) instead of holding the
    graceful shutdown for their whole wait."""

    def __init__(
        self,
        config: uvicorn.Config,
        state: HubState,
        listeners: list[Listener],
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config)
        self._state = state
        self._listeners = listeners
        self._limits = limits

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # No sockets for uvicorn: it runs the app's lifespan and binds
        # nothing. Our acceptors join its server list, so its shutdown
        # closes them (close, then wait_closed) as it would its own.
        await super().startup(sockets=[])
        if self.should_exit:
            return
        settle_heap()
        config, server_state, app_state = self.config, self.server_state, self.lifespan.state
        loop = asyncio.get_running_loop()

        def make_protocol() -> GuardedHttpToolsProtocol:
            return GuardedHttpToolsProtocol(
                config=config, server_state=server_state, app_state=app_state, _loop=loop
            )

        table = ConnectionTable(self._limits, ShedCounter(self._state.metrics))
        self._state.metrics.add_connection_gauge(lambda: table.total)
        handshakes = self._state.metrics.tls_handshakes
        full, resumed = handshakes.labels("full"), handshakes.labels("resumed")

        def count_handshake(was_resumed: bool) -> None:
            (resumed if was_resumed else full).inc()

        for listener in self._listeners:
            acceptor = Acceptor(listener, table, self._limits, make_protocol, count_handshake)
            self.servers.append(acceptor)  # type: ignore[arg-type]  # close + wait_closed

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._state.notifier.close()
        super().handle_exit(sig, frame)


class SchemaUpgradeError(FoglineError):
    """The schema migrations failed (their traceback is on stderr)."""


def upgrade_schema_apart(db_url: str) -> None:
    """upgrade_schema in a forked child, on an engine of its own; returns
    once it succeeded.

    Alembic, Mako and Pygments (which Mako imports) are about 11 MB resident
    in each process that imports them, and a hub needs them only for this:
    run here, the process the workers fork from never imports them. Dropping
    them from sys.modules after the migrations did not lower the workers'
    RSS (the freed memory stays in Python's allocator).

    Raises:
        SchemaUpgradeError: the child failed (it printed why) or was killed.
    """
    for stream in (sys.stdout, sys.stderr):  # or the child would write it again
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the child: exits, never returns
        code = 1
        try:
            engine = make_engine(db_url)
            try:
                upgrade_schema(engine)
            finally:
                engine.dispose()
            code = 0
        except BaseException:  # reported, then the child's exit code says it
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SchemaUpgradeError(f"the schema migrations failed (exit code {code}); see above")


# Container allocations (net of frees) between two young collections:
# CPython's default is 700, which a busy hub passes every few requests.
GC_YOUNG_THRESHOLD: Final = 10_000


def settle_heap() -> None:
    """Freeze what the hub built to start (modules, app, routes, schema:
    about 190,000 objects) out of the cyclic garbage collector, and collect
    the young generation less often.

    Every full collection walked those objects again, for nothing: they
    live as long as the process. With 2,000 devices reporting, collections
    took 4-6 % of the hub's CPU, and a full one about 100 ms of it, during
    which the loop answers nobody; settled, 1.6-2 %, and full
    collections 2-3 times fewer (BENCHMARKS.md, hub capacity). Objects made later (connections,
    requests) are still collected; a larger young generation only lets
    garbage cycles wait a little longer.
    """
    gc.collect()
    gc.freeze()
    _young, *older = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


# glibc malloc for the server processes, set before any thread starts (the
# workers inherit it through fork). Each connection's TLS layer (uvloop)
# mallocs a 256 KiB read buffer and touches a few KiB of it: with the
# threshold fixed at glibc's initial 128 KiB each buffer is a mapping of its
# own, its untouched pages never resident and all of it unmapped at close,
# instead of carved from the heap once glibc's moving threshold has risen
# past it. Two arenas: the request threads' frees stay in one shared arena.
# With 2,000 open connections each holding a long-poll: 57.6-57.9 KB of RSS
# per connection against 59.8-61.4 (BENCHMARKS.md, hub memory per open
# device connection).
MALLOC_ARENAS: Final = 2
MALLOC_MMAP_THRESHOLD: Final = 128 * 1024


def serve(options: ServeOptions) -> None:
    configure_logging(options.log_level)
    cap_arenas(MALLOC_ARENAS)
    fix_mmap_threshold(MALLOC_MMAP_THRESHOLD)
    files_limit = raise_open_file_limit()
    limits = fit_limits(options.limits, files_limit.soft)
    event(
        log,
        "hub.open_file_limit",
        soft=files_limit.soft,
        hard=files_limit.hard,
        raised_from=files_limit.was,
    )
    event(
        log,
        "hub.connection_limits",
        per_process=True,
        max_total=limits.max_total,
        max_per_address=limits.max_per_address,
        handshake_timeout_s=limits.handshake_timeout_s,
        idle_timeout_s=limits.idle_timeout_s,
        header_timeout_s=limits.header_timeout_s,
        body_timeout_s=limits.body_timeout_s,
        lowered_to_fit_open_files=limits != options.limits,
    )
    options = replace(options, limits=limits)
    hub = build_hub(options, migrate_apart=True)
    state, files = hub.state, hub.files
    tickets = None
    if options.tls_tickets:
        secret_path = files.tls_cert.parent / TICKET_SECRET_FILE
        try:
            secret = load_or_create_ticket_secret(secret_path)
        except (TicketSecretError, OSError) as exc:
            event(log, "hub.ticket_secret_unreadable", logging.ERROR, error=str(exc))
            sys.exit(1)
        tickets = TicketKeys(secret, options.ticket_period_s)
    try:
        sockets = _bind(options)
    except OSError as exc:
        event(log, "hub.bind_failed", logging.ERROR, error=str(exc))
        sys.exit(1)
    event(
        log,
        "hub.starting",
        host=options.host,
        port=sockets[0].getsockname()[1],
        metrics_listen=_address(sockets[1]) if len(sockets) > 1 else None,
        data_dir=str(options.data_dir),
        db=state.engine.dialect.name,
        workers=options.workers,
    )
    if options.workers <= 1:
        started = _run_server(state, files, options, sockets, tickets)
        sys.exit(0 if started else 1)
    state.engine.dispose()  # the workers open their own connections
    sys.exit(_run_workers(options, files, sockets, tickets))


def _bind(options: ServeOptions) -> list[socket.socket]:
    """The API's listening socket, then the metrics one if asked for."""
    sockets = [bind_listener(options.host, options.port)]
    if options.metrics_listen is not None:
        try:
            sockets.append(bind_listener(*options.metrics_listen))
        except OSError:
            sockets[0].close()
            raise
    return sockets


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _uvicorn_config(state: HubState, options: ServeOptions) -> uvicorn.Config:
    return uvicorn.Config(
        # Device reports skip FastAPI's routing (see _hot_path.py). Requests
        # over plain HTTP (the metrics listener) reach /metrics and nothing else.
        PlainHttpMetricsOnly(DeviceHotPath(create_app(state), state), state.metrics.registry),
        # uvloop's TLS and the httptools parser are C: with them one hub core
        # serves several times the device requests (BENCHMARKS.md, hub scale).
        # TLS itself is set up by our acceptors (see _listener.py), not uvicorn.
        loop="uvloop",
        http=GuardedHttpToolsProtocol,
        ws="none",
        # The hub terminates TLS itself: X-Forwarded-For from a client on the
        # same host must not rename the caller.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        # Between requests; before the first one our protocol applies the
        # same timeout (see _http_guard.py).
        timeout_keep_alive=math.ceil(options.limits.idle_timeout_s),
    )


def _run_server(
    state: HubState,
    files: HubFiles,
    options: ServeOptions,
    sockets: list[socket.socket],
    tickets: TicketKeys | None,
) -> bool:
    """Serve until told to stop; False if the server never started."""
    # Reloaded for new connections when the files change: the hub's own
    # certificate and the CA bundle rotate without a restart.
    tls = ReloadingServerTls(
        files.tls_cert,
        files.tls_key,
        files.ca_cert,
        tickets=tickets,
        issue_tickets=options.tls_tickets,
        session_cache=options.tls_session_cache,
    )
    listeners = [Listener(sockets[0], tls, "api")]
    listeners += [Listener(sock, None, "metrics") for sock in sockets[1:]]
    server = HubServer(_uvicorn_config(state, options), state, listeners, options.limits)
    try:
        server.run()
    finally:
        state.engine.dispose()
        for sock in sockets:
            sock.close()
    return bool(server.started)


def _run_workers(
    options: ServeOptions,
    files: HubFiles,
    sockets: list[socket.socket],
    tickets: TicketKeys | None,
) -> int:
    """Fork `options.workers` servers on the listening sockets and supervise
    them (see fogline/_hub_parent.py); returns the hub's exit code if the
    exec of the small supervisor failed, else never returns.

    SIGTERM/SIGINT stop every worker gracefully. A worker that dies on its
    own stops the others and the hub exits 1, so whatever supervises the hub
    restarts it whole. Workers die with the hub even if it is SIGKILLed.
    """
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
                code = 0 if _run_server(state, files, options, sockets, tickets) else 1
            finally:
                os._exit(code)
        workers.add(pid)
    for sock in sockets:
        sock.close()
    # From here this process only waits: a small interpreter does that in
    # its place (see fogline/_hub_parent.py); in process if the exec fails.
    exec_parent(workers, options.log_level)
    return supervise(workers)
