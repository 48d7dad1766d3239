"""Every route of the hub and what it needs: the one table the auth dependency reads.

A route absent from the table is refused to every token (403), and
tests/hub/test_route_permissions.py walks every route of the app with a token
of every role against this table, so a new route cannot ship unlisted.

Device routes are outside the role scheme: they authenticate a device by its
client certificate (mTLS), or a claim token at enrollment, and are listed so
that the table is complete.
"""

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from fogline.protocol import API_PREFIX
from fogline.security import Permission, roles_with


class Access(StrEnum):
    """Routes a bearer token's role does not decide."""

    # Values unlike any Permission's: both are str enums, equal by value.
    DEVICE = "device-certificate"  # the device's client certificate (mTLS)
    CLAIM = "claim-token"  # a claim token in the body: enrollment
    # a user's password in the body: the console's sign-in
    PASSWORD = "password"  # noqa: S105 - the name of a kind of access
    PUBLIC = "public"  # anyone: the liveness probe


Need = Permission | Access
_V = API_PREFIX
# Reading a device's module and agent logs: one row for the API
# (GET /v1/telemetry, where logs are `logs/<module>` streams) and the console's
# Logs section, so a role reads logs in both or in neither.
LOG_READING: Final[Permission] = Permission.READ

ROUTE_PERMISSIONS: Final[Mapping[tuple[str, str], Need]] = {
    # devices (mTLS), enrollment
    ("POST", f"{_V}/enroll"): Access.CLAIM,
    ("POST", f"{_V}/report"): Access.DEVICE,
    ("POST", f"{_V}/renew"): Access.DEVICE,
    ("GET", f"{_V}/desired"): Access.DEVICE,
    ("POST", f"{_V}/telemetry"): Access.DEVICE,
    # claims and devices
    ("GET", f"{_V}/claims"): Permission.READ,  # no claim token is ever shown again
    ("POST", f"{_V}/claims"): Permission.CLAIM,
    ("POST", f"{_V}/claims/{{ref}}/revoke"): Permission.CLAIM,
    ("GET", f"{_V}/devices"): Permission.READ,
    ("GET", f"{_V}/devices/{{ref}}"): Permission.READ,
    ("GET", f"{_V}/devices/{{ref}}/desired"): Permission.READ,
    ("GET", f"{_V}/devices/{{ref}}/health"): Permission.READ,
    ("PATCH", f"{_V}/devices/{{ref}}/labels"): Permission.LABEL,  # and the scope
    ("POST", f"{_V}/devices/{{ref}}/unquarantine"): Permission.LABEL,  # and the scope
    ("POST", f"{_V}/devices/{{ref}}/revoke"): Permission.REVOKE,
    ("DELETE", f"{_V}/devices/{{ref}}"): Permission.REVOKE,
    # manifests: ReleaseKey and ProvisioningClaim documents need their own
    # permission too (routes/_manifest.py), and a scoped role stays in its scope.
    ("POST", f"{_V}/manifests/plan"): Permission.READ,
    ("POST", f"{_V}/manifests/apply"): Permission.APPLY,
    ("GET", f"{_V}/deployments"): Permission.READ,
    ("GET", f"{_V}/deployments/{{name}}"): Permission.READ,
    ("DELETE", f"{_V}/deployments/{{name}}"): Permission.APPLY,
    ("GET", f"{_V}/releasekeys"): Permission.READ,  # public keys
    ("DELETE", f"{_V}/releasekeys/{{name}}"): Permission.RELEASE_KEY,
    # releases; devices read the ones their desired state names (certificate)
    ("POST", f"{_V}/releases"): Permission.RELEASE,
    ("GET", f"{_V}/releases"): Permission.READ,
    ("GET", f"{_V}/releases/{{name}}/{{version}}"): Permission.READ,
    ("GET", f"{_V}/releases/{{name}}/{{version}}/sbom"): Permission.READ,
    ("DELETE", f"{_V}/releases/{{name}}/{{version}}"): Permission.RELEASE,
    ("GET", f"{_V}/artifacts/{{digest}}"): Permission.READ,
    ("GET", f"{_V}/artifacts/{{digest}}/delta"): Permission.READ,
    # TUF: devices read metadata with their certificate, operators with READ
    ("GET", f"{_V}/tuf/metadata/{{filename}}"): Permission.READ,
    ("PUT", f"{_V}/tuf/roles/{{role}}"): Permission.RELEASE,
    ("GET", f"{_V}/tuf/online-key"): Permission.READ,
    # the offline vulnerability database: importing it is trust material, like keys
    ("POST", f"{_V}/vulndb/imports"): Permission.RELEASE_KEY,
    ("GET", f"{_V}/vulndb"): Permission.READ,
    ("GET", f"{_V}/vulns"): Permission.READ,
    ("GET", f"{_V}/vulnpolicies"): Permission.READ,
    ("DELETE", f"{_V}/vulnpolicies/{{name}}"): Permission.RELEASE_KEY,
    # rollouts, audit, telemetry
    ("GET", f"{_V}/rollouts"): Permission.READ,
    ("GET", f"{_V}/rollouts/{{ref}}"): Permission.READ,
    ("POST", f"{_V}/rollouts/{{ref}}/{{action}}"): Permission.ROLLOUT,  # and the scope
    ("GET", f"{_V}/audit"): Permission.READ,
    ("GET", f"{_V}/audit/head"): Permission.READ,
    ("GET", f"{_V}/telemetry"): LOG_READING,  # module and agent logs are telemetry
    ("GET", f"{_V}/alerts"): Permission.READ,
    ("POST", f"{_V}/alerts/{{ref}}/ack"): Permission.ALERT,
    ("GET", f"{_V}/insights"): Permission.READ,
    # people
    ("GET", f"{_V}/whoami"): Permission.READ,
    ("POST", f"{_V}/sessions"): Access.PASSWORD,
    ("GET", f"{_V}/users"): Permission.USERS,
    ("POST", f"{_V}/users"): Permission.USERS,
    ("PATCH", f"{_V}/users/{{name}}"): Permission.USERS,
    ("DELETE", f"{_V}/users/{{name}}"): Permission.USERS,
    ("GET", f"{_V}/tokens"): Permission.TOKENS,
    ("POST", f"{_V}/tokens"): Permission.TOKENS,
    ("POST", f"{_V}/tokens/{{token_id}}/revoke"): Permission.TOKENS,
    # the console (hub/console/): a session cookie, not a bearer token, and
    # its own walk (tests/console/test_console_routes.py)
    ("GET", "/console/sign-in"): Access.PUBLIC,
    ("POST", "/console/sign-in"): Access.PASSWORD,  # or a token, in the form
    ("GET", "/console/static/{name}"): Access.PUBLIC,
    ("POST", "/console/sign-out"): Permission.READ,
    ("GET", "/console"): Permission.READ,
    ("GET", "/console/devices"): Permission.READ,
    ("GET", "/console/devices/{ref}"): Permission.READ,  # logs shown if LOG_READING
    ("GET", "/console/devices/{ref}/logs/events"): LOG_READING,
    ("POST", "/console/devices/{ref}/labels"): Permission.LABEL,  # and the scope
    ("GET", "/console/rollouts"): Permission.READ,
    ("GET", "/console/rollouts/{ref}"): Permission.READ,
    ("GET", "/console/rollouts/{ref}/events"): Permission.READ,
    ("POST", "/console/rollouts/{ref}/{action}"): Permission.ROLLOUT,  # and the scope
    ("POST", "/console/alerts/{ref}/ack"): Permission.ALERT,
    ("GET", "/console/releases"): Permission.READ,
    ("GET", "/console/deployments"): Permission.READ,
    ("GET", "/console/audit"): Permission.READ,
    ("GET", "/console/telemetry"): Permission.READ,
    # outside /v1 and outside the OpenAPI document
    ("GET", "/metrics"): Permission.READ,
    ("GET", "/openapi.json"): Permission.READ,
    ("GET", "/docs"): Permission.READ,
    ("GET", "/healthz"): Access.PUBLIC,
}


def route_need(method: str, path: str) -> Need | None:
    """What (METHOD, route path template) needs; None when the table lacks it."""
    method = "GET" if method == "HEAD" else method
    return ROUTE_PERMISSIONS.get((method, path))


def granted(permission: Permission) -> str:
    """`admin has`, `release-manager and admin have`: for a 403's message."""
    roles = roles_with(permission)
    return f"{' and '.join(roles)} {'has' if len(roles) == 1 else 'have'}"
