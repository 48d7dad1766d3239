"""`fogline hub serve`: prepare the data directory and run the app over TLS."""

import logging
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn

from fogline._log import configure_logging, event
from fogline.security import ADMIN_PREFIX

from ._app import create_app
from ._datadir import HubFiles, prepare_data_dir, save_admin_token
from ._db import make_engine, make_session_factory, sqlite_url, upgrade_schema
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


@dataclass(frozen=True, slots=True)
class BuiltHub:
    state: HubState
    files: HubFiles
    new_admin_token: str | None  # set only on the start that created it


def build_hub(options: ServeOptions) -> BuiltHub:
    """Everything but the listening socket: data directory, schema, state."""
    files = prepare_data_dir(options.data_dir, options.sans)
    engine = make_engine(options.db_url or sqlite_url(options.data_dir))
    upgrade_schema(engine)
    state = HubState(
        engine,
        make_session_factory(engine),
        files.ca,
        options.settings,
        artifacts_dir=options.data_dir / "artifacts",
    )
    swept = ArtifactStore(options.data_dir / "artifacts").sweep_partial_uploads()
    if swept:
        event(log, "hub.swept_partial_uploads", count=swept)
    with state.transaction() as session:
        token = ensure_admin_token(session, ADMIN_PREFIX)
    if token is not None:
        save_admin_token(files, token.token)
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
    state, files, new_token = hub.state, hub.files, hub.new_admin_token
    if new_token:
        # Printed once, on stdout (never to the log); also kept 0600 on disk.
        print(f"admin token (also in {files.admin_token}): {new_token}", flush=True)
    config = uvicorn.Config(
        create_app(state),
        host=options.host,
        port=options.port,
        # uvloop's TLS and the httptools parser are C: together they more
        # than double the requests one hub core serves (BENCHMARKS.md).
        loop="uvloop",
        http=ClientCertHttpToolsProtocol,
        ssl_keyfile=str(files.tls_key),
        ssl_certfile=str(files.tls_cert),
        ssl_ca_certs=str(files.ca_cert),
        # Optional at the TLS layer so operators can use tokens on the same
        # port; the device API itself refuses requests without a certificate.
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        # Devices keep their mTLS connection between reports: closing it sooner
        # than they report makes every report pay a new TLS handshake.
        timeout_keep_alive=int(max(30.0, options.settings.report_interval_s * 3)),
    )
    event(
        log,
        "hub.starting",
        host=options.host,
        port=options.port,
        data_dir=str(options.data_dir),
        db=state.engine.dialect.name,
    )
    server = HubServer(config, state)
    server.run()
    state.engine.dispose()
    if not server.started:
        sys.exit(1)
