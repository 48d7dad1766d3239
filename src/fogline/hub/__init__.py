"""The cloud tier: registry, identity, desired state and the operator API."""

from ._admin import AdminTokenError, rotate_admin_token_file
from ._alerts import AlertThresholds
from ._app import create_app
from ._ca_lifecycle import CaLifecycleError, RetireResult, Straggler, retire_old_ca, rotate_ca
from ._connections import ConnectionLimits
from ._datadir import HubFiles, prepare_data_dir
from ._db import make_engine, sqlite_url, upgrade_schema
from ._forecast import ForecastSettings
from ._health import HealthRetention
from ._listener import parse_metrics_listen
from ._serve import BuiltHub, ServeOptions, build_hub, serve
from ._state import HubSettings, HubState
from ._tls import ClientCertH11Protocol, ClientCertHttpToolsProtocol
from ._tuf import TufSettings

__all__ = [
    "AdminTokenError",
    "AlertThresholds",
    "BuiltHub",
    "CaLifecycleError",
    "ClientCertH11Protocol",
    "ClientCertHttpToolsProtocol",
    "ConnectionLimits",
    "ForecastSettings",
    "HealthRetention",
    "HubFiles",
    "HubSettings",
    "HubState",
    "RetireResult",
    "ServeOptions",
    "Straggler",
    "TufSettings",
    "build_hub",
    "create_app",
    "make_engine",
    "parse_metrics_listen",
    "prepare_data_dir",
    "retire_old_ca",
    "rotate_admin_token_file",
    "rotate_ca",
    "serve",
    "sqlite_url",
    "upgrade_schema",
]
