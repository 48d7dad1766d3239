"""Roles and the permissions each grants: who may do what to a fleet.

A role is one of four; every hub route needs one permission (the route table
is `fogline.hub` `ROUTE_PERMISSIONS`), and a role grants a fixed set of them.
Roles do not inherit from one another in code: each set is written out, so
reading this table answers "may a release manager label a device?" (no).

A role may be scoped to labels (`site=berlin`): what it changes must stay
inside them (see `selector_within_scope` and `labels_within_scope`). Scopes
limit changes, not reads.

    viewer            reads everything but secrets
    operator          + labels, rollout pause/resume/abort/rollback, alerts
    release-manager   + push and remove releases, release keys, apply deployments
    admin             everything: users, tokens, claims, revoke, CA, backup
"""

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final

from fogline.manifest import Operator, Requirement, Selector


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    RELEASE_MANAGER = "release-manager"
    ADMIN = "admin"


class Permission(StrEnum):
    """What a route needs. Some have no route yet (alert, ca, backup): they
    are granted here so the routes that come can name them."""

    READ = "read"  # every GET that shows no secret
    LABEL = "label"  # set, remove, promote a device's labels
    ROLLOUT = "rollout"  # pause, resume, abort, roll back a rollout
    ALERT = "alert"  # acknowledge and silence alerts
    RELEASE = "release"  # push and remove releases
    RELEASE_KEY = "release-key"  # apply and delete ReleaseKeys
    APPLY = "apply"  # apply and delete Deployments
    CLAIM = "claim"  # create and revoke claims, apply ProvisioningClaims
    REVOKE = "revoke"  # revoke and remove devices
    USERS = "users"  # add, change and remove users
    TOKENS = "tokens"  # create, list and revoke API tokens
    CA = "ca"  # rotate the fleet CA
    BACKUP = "backup"  # take and restore backups


_VIEWER: Final = frozenset({Permission.READ})

ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _VIEWER | {Permission.LABEL, Permission.ROLLOUT, Permission.ALERT},
    Role.RELEASE_MANAGER: _VIEWER | {Permission.RELEASE, Permission.RELEASE_KEY, Permission.APPLY},
    Role.ADMIN: frozenset(Permission),
}


def role_allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def roles_with(permission: Permission) -> list[Role]:
    """The roles that grant `permission`, in the order of `Role`."""
    return [role for role in Role if permission in ROLE_PERMISSIONS[role]]


def scope_text(scope: Mapping[str, str]) -> str:
    """`site=berlin,zone=a`: a scope as it is typed and shown."""
    return ",".join(f"{key}={value}" for key, value in sorted(scope.items()))


def labels_within_scope(labels: Mapping[str, str], scope: Mapping[str, str] | None) -> bool:
    """Whether a device with `labels` is inside `scope` (None: unscoped, every device)."""
    return scope is None or all(labels.get(key) == value for key, value in scope.items())


def selector_within_scope(selector: Selector, scope: Mapping[str, str] | None) -> bool:
    """Whether every device `selector` can ever select is inside `scope`.

    Decided on the selector, not on today's devices: a device enrolled
    tomorrow in Paris must not fall under a Berlin operator's deployment.
    Each scope label must be required by the selector with that one value
    (`matchLabels` or an `In` of exactly that value).
    """
    if scope is None:
        return True
    return all(_pins(selector.requirements(), key, value) for key, value in scope.items())


def _pins(requirements: Iterable[Requirement], key: str, value: str) -> bool:
    want = frozenset({value})
    return any(
        r.key == key and r.operator is Operator.IN and r.values == want for r in requirements
    )
