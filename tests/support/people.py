"""Users and tokens on a real hub, made through its API with the admin token."""

from __future__ import annotations

from typing import Any

import httpx

from .processes import HubProcess, tls


def as_token(hub: HubProcess, token: str) -> httpx.Client:
    """A client for `hub` that sends `token` (hub.client() sends the admin's)."""
    return httpx.Client(
        base_url=hub.url,
        verify=tls(hub.ca),
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )


def add_user(
    hub: HubProcess, name: str, role: str, scope: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    with hub.client() as client:
        response = client.post(
            "/v1/users", json={"name": name, "role": role, "scope": scope, **extra}
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


def new_token(hub: HubProcess, user: str, name: str = "test", expires_in_s: float = 3600) -> str:
    """A token for `user` (created with the admin token); returns the token."""
    with hub.client() as client:
        response = client.post(
            "/v1/tokens", json={"user": user, "name": name, "expires_in_s": expires_in_s}
        )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def user_with_token(
    hub: HubProcess, name: str, role: str, scope: dict[str, str] | None = None
) -> str:
    add_user(hub, name, role, scope)
    return new_token(hub, name)
