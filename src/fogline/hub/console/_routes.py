"""The console's routes under `/console`: sign-in, pages, forms, live updates.

Every route is in the permission table (hub/_permissions.py) like an API
route, and every POST declares its audit action; they are left out of the
OpenAPI document (HTML, not API) and walked by tests/console/test_console_routes.py.
A page reads through the same functions as the API (hub/_inventory.py,
_health.py, _alerts.py, rollouts, releases, _audit.py, _telemetry.py), and
a form changes state through the very function its API route calls
(`relabel_device`, `act_on_rollout`), which audits it.

    _entry         sign-in, sign-out, static files, the overview
    _device_pages  the device list and a device's page, logs, labels
    _fleet_pages   rollouts, releases, deployments, audit, telemetry
    _live          live sections (server-sent events)
"""

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from .._errors import ApiError
from .._state import HubState
from . import _device_pages, _entry, _fleet_pages
from ._render import render
from ._session import SESSION_COOKIE, SIGN_IN_PATH, ConsoleRefusal

# -- wiring --------------------------------------------------------------------


def _refused(request: Request, exc: Exception) -> Response:
    """A console refusal as a page; a browser without a session goes to sign in."""
    if isinstance(exc, ConsoleRefusal):
        status, message, to_sign_in = exc.status, exc.message, exc.sign_in
    elif isinstance(exc, ApiError):
        status, message, to_sign_in = exc.status, exc.message, False
    else:  # pragma: no cover - registered for the two above only
        raise exc
    if to_sign_in and request.method == "GET":
        response: Response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    else:
        response = render("error.html", status=status, message=message, user=None)
    if to_sign_in:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
    return response


def install_console(app: FastAPI, state: HubState) -> None:
    """Serve the console at /console on `app` (the hub's TLS port)."""
    del state  # the routes read it from the app, like the API's
    for pages in (_entry, _device_pages, _fleet_pages):
        app.include_router(pages.router)
    previous = app.exception_handlers.get(ApiError)

    async def api_error(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/console") and not request.url.path.startswith(
            "/console/static"
        ):
            return _refused(request, exc)
        assert previous is not None
        result = previous(request, exc)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, Response)
        return result

    async def console_refusal(request: Request, exc: Exception) -> Response:
        return _refused(request, exc)

    app.add_exception_handler(ConsoleRefusal, console_refusal)
    if previous is not None:
        app.add_exception_handler(ApiError, api_error)


__all__ = ["install_console"]
