"""Modules on the node: desired releases -> updater -> supervisor, plus drift."""

from ._drift import Drift, FileBaselines, file_digests
from ._manager import (
    ModuleManager,
    SupervisorActivator,
    node_module_manager,
    scopes_from,
    targets_from,
)

__all__ = [
    "Drift",
    "FileBaselines",
    "ModuleManager",
    "SupervisorActivator",
    "file_digests",
    "node_module_manager",
    "scopes_from",
    "targets_from",
]
