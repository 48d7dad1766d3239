"""Rollouts: a deployment change reaches devices wave by wave, behind a health gate.

_policy     `spec.rollout`: waves, bake, success threshold, failure budget
_machine    the rollout state table and the pure wave logic (no database)
_engine     start a rollout per change, advance it, act on it (the database side)
_views      what operators read: a rollout, its members, its JSON view
_scheduler  one tick about every second in each hub replica
"""

from ._engine import (
    choose_policy,
    lock_rollouts,
    operate,
    snapshot_deployments,
    start_rollout,
    tick,
)
from ._machine import ACTIVE
from ._policy import DEFAULT_POLICY, check_rollout, parse_rollout_policy
from ._scheduler import run_scheduler
from ._views import available_actions, find_rollout, list_rollouts, rollout_view

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
