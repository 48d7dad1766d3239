"""Rollouts: a deployment change reaches devices wave by wave, behind a health gate.

_policy     `spec.rollout`: waves, bake, success threshold, failure budget
_machine    the rollout state table and the pure wave logic (no database)
_start      start a rollout per change (the database side)
_engine     advance a rollout wave by wave, act on it (the database side)
_waves      what both share: the rollout lock, a state transition, starting a wave
_views      what operators read: a rollout, its members, its JSON view
_scheduler  one tick about every second in each hub replica
"""

from ._engine import operate, tick
from ._machine import ACTIVE
from ._policy import DEFAULT_POLICY, check_rollout, parse_rollout_policy
from ._scheduler import run_scheduler
from ._start import choose_policy, snapshot_deployments, start_rollout
from ._views import available_actions, find_rollout, list_rollouts, rollout_view
from ._waves import lock_rollouts

__all__ = [
    "ACTIVE",
    "DEFAULT_POLICY",
    "available_actions",
    "check_rollout",
    "choose_policy",
    "find_rollout",
    "list_rollouts",
    "lock_rollouts",
    "operate",
    "parse_rollout_policy",
    "rollout_view",
    "run_scheduler",
    "snapshot_deployments",
    "start_rollout",
    "tick",
]
