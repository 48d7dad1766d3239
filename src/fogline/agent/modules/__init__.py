"""Modules on the node: desired releases -> updater -> supervisor, plus drift.

_manager    ModuleManager: applies the desired state's modules; the node's stack
_activator  the updater's activator, backed by the supervisor
_specs      desired modules -> release targets; a module file -> a run spec
_trust      which release keys the node trusts, and what each may sign
_repair     drift checks and repairs (the manager's base)
_drift      file baselines and what drift is
"""

from ._activator import SupervisorActivator
from ._drift import Drift, FileBaselines, file_digests
from ._manager import ModuleManager, node_module_manager
from ._specs import targets_from
from ._trust import scopes_from

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
