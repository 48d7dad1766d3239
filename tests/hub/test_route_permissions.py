"""Every route of the hub against the one permission table, with a token of every role.

The routes come from the app itself (the OpenAPI document of a real hub, and
the routes left out of it such as /metrics): a route the table does not list
fails here, and so does a table entry no route has.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from fogline.hub import create_app
from fogline.hub._permissions import ROUTE_PERMISSIONS, Access
from fogline.hub._serve import ServeOptions, build_hub
from fogline.protocol import RoleName
from fogline.security import Permission, Role, role_allows
from tests.support.people import as_token, user_with_token
from tests.support.processes import HubProcess, start_hub, tls

CONSOLE_PREFIX = "/console"

# A value for each path parameter that names nothing: an allowed call answers
# 404 or 422 and changes nothing, a refused one 403.
PLACEHOLDERS = {
    "ref": "no-such-thing",
    "name": "no-such-thing",
    "version": "0.0.0",
    "digest": "sha256:" + "0" * 64,
    "action": "pause",
    "token_id": "nosuchtoken0",
    "filename": "no-such-thing",
    "role": "no-such-thing",
}


def _routes_of(routes: list[Any]) -> Iterator[APIRoute]:
    """The app's routes, into included routers (FastAPI keeps them nested)."""
    pending = list(routes)
    for _ in range(10_000):  # bounded: routers nest a few levels at most
        if not pending:
            return
        route = pending.pop()
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            pending.extend(route.original_router.routes)
        elif hasattr(route, "routes"):
            pending.extend(route.routes)
    raise AssertionError("routes nest too deep")


def _app_routes() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(every route of the app, the ones its OpenAPI document leaves out)."""
    with tempfile.TemporaryDirectory() as scratch:
        built = build_hub(ServeOptions(data_dir=Path(scratch) / "hub"))
        try:
            app = create_app(built.state)
            routes = list(_routes_of(list(app.routes)))
        finally:
            built.state.engine.dispose()
    every = {(method, r.path) for r in routes for method in r.methods if method != "HEAD"}
    hidden = {
        (method, r.path)
        for r in routes
        if not r.include_in_schema
        for method in r.methods
        if method != "HEAD"
    }
    return every, hidden


def test_the_table_lists_every_route_of_the_app_and_nothing_else() -> None:
    every, _hidden = _app_routes()
    assert every, "the app has routes"
    assert not every - ROUTE_PERMISSIONS.keys(), "routes missing from ROUTE_PERMISSIONS"
    assert not ROUTE_PERMISSIONS.keys() - every, "ROUTE_PERMISSIONS lists routes that do not exist"


def test_no_access_kind_equals_a_permission() -> None:
    # Both are str enums: a shared value would make them compare equal.
    assert not {a.value for a in Access} & {p.value for p in Permission}


def test_roles_in_the_wire_models_are_the_security_roles() -> None:
    assert set(RoleName.__args__) == {role.value for role in Role}  # type: ignore[attr-defined]


def test_each_role_grants_what_the_issue_says() -> None:
    assert {p for p in Permission if role_allows(Role.VIEWER, p)} == {Permission.READ}
    assert not role_allows(Role.OPERATOR, Permission.APPLY)
    assert role_allows(Role.OPERATOR, Permission.LABEL)
    assert role_allows(Role.OPERATOR, Permission.ROLLOUT)
    assert role_allows(Role.RELEASE_MANAGER, Permission.APPLY)
    assert role_allows(Role.RELEASE_MANAGER, Permission.RELEASE_KEY)
    assert not role_allows(Role.RELEASE_MANAGER, Permission.LABEL)
    for permission in (Permission.USERS, Permission.TOKENS, Permission.CLAIM, Permission.REVOKE):
        assert [r for r in Role if role_allows(r, permission)] == [Role.ADMIN]


@pytest.fixture(scope="module")
def callers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[HubProcess, dict[str, Any]]]:
    hub = start_hub(tmp_path_factory.mktemp("routes") / "hub")
    try:
        tokens: dict[str, Any] = {"bootstrap": (Role.ADMIN, hub.token)}
        for role in Role:
            tokens[role.value] = (role, user_with_token(hub, f"walk-{role.value}", role.value))
        yield hub, tokens
    finally:
        hub.stop()


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PLACEHOLDERS[m[1]], path)


def test_every_route_answers_every_role_as_the_table_says(
    callers: tuple[HubProcess, dict[str, Any]],
) -> None:
    hub, tokens = callers
    with as_token(hub, hub.token) as admin:
        spec = admin.get("/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    _every, hidden = _app_routes()
    # The console's routes take a session cookie, not a bearer token: they
    # are walked with a cookie of every role in tests/console/test_console_routes.py.
    console = {(method, path) for method, path in hidden if path.startswith(CONSOLE_PREFIX)}
    walked = documented | (hidden - console)
    assert walked | console == set(ROUTE_PERMISSIONS), "the served API differs from the table"
    wrong: list[str] = []
    for method, path in sorted(walked):
        need = ROUTE_PERMISSIONS[(method, path)]
        for who, (role, token) in tokens.items():
            with as_token(hub, token) as client:
                response = client.request(method, _url(path))
            status = response.status_code
            if need is Access.PUBLIC:
                ok = status == 200
            elif need is Access.DEVICE:
                ok = status == 401  # a token is no client certificate
            elif need is Access.CLAIM or need is Access.PASSWORD:
                ok = status == 422  # no body: the claim or the password is in it
            elif role_allows(role, need):
                ok = status not in (401, 403) and status < 500
            else:
                ok = status == 403 and f"permission {need.value!r}," in response.json()["message"]
            if not ok:
                wrong.append(f"{method} {path} as {who} ({need}): {status} {response.text[:160]}")
        with httpx.Client(base_url=hub.url, verify=tls(hub.ca), timeout=10) as nobody:
            status = nobody.request(method, _url(path)).status_code
        if isinstance(need, Permission) and status != 401:
            wrong.append(f"{method} {path} without a token: {status}")
    assert not wrong, "\n".join(wrong)
