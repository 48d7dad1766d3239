"""The console of a real hub over HTTP, as a browser would use it (without one)."""

from __future__ import annotations

import re

import httpx

from .processes import HubProcess, tls

SESSION_COOKIE = "__Host-fogline-session"
SIGN_IN_COOKIE = "__Host-fogline-sign-in"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console_client(hub: HubProcess, token: str | None = None) -> httpx.Client:
    """A client of `hub`'s console holding `token` in the session cookie
    (what signing in with a token gives), or no session."""
    client = httpx.Client(base_url=hub.url, verify=tls(hub.ca), timeout=10)
    if token is not None:
        client.cookies.set(SESSION_COOKIE, token, domain="127.0.0.1", path="/")
    return client


def csrf_of(html: str) -> str:
    """The CSRF token of the first form in a console page."""
    found = _CSRF.search(html)
    assert found is not None, f"no CSRF field in the page: {html[:300]}"
    return found[1]


def session_csrf(client: httpx.Client) -> str:
    """The session's CSRF token, read from a page as a browser would see it."""
    response = client.get("/console/audit")
    assert response.status_code == 200, response.text[:300]
    return csrf_of(response.text)


def sign_in_with_password(client: httpx.Client, user: str, password: str) -> httpx.Response:
    page = client.get("/console/sign-in")
    assert page.status_code == 200
    return client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(page.text), "user": user, "password": password},
    )
