"""The audit trail around every state-changing request, in one place.

Each non-GET route declares in its OpenAPI operation either the action it is
audited as (`audited("device.revoke", target="{ref}")`) or why it is not
(`not_audited("changes nothing")`); tests/hub/test_audit_trail.py walks the
document and fails on a route that declares neither.

`AuditTrail` (plain ASGI) gives each such request a `RequestAudit` (the
client's address; the auth dependency adds the caller), and when the answer
is a refusal (4xx) or a failure (5xx), writes the entry the route could not,
before the answer leaves:
outcome `refused`/`failed`, the status and the error body's message. Routes
write their own entries for what they did, with before/after, in the
transaction that does it.
"""

import logging
from typing import Any, Final

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fogline._log import event

from ._audit import RequestAudit, begin_request, end_request, record_audit
from ._state import HubState

log = logging.getLogger("fogline.hub.audit")

AUDIT_ACTION: Final = "x-audit-action"
AUDIT_TARGET: Final = "x-audit-target"
NOT_AUDITED: Final = "x-audit-exempt"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# An error body is a few hundred bytes; more is not read for the reason.
_MAX_ERROR_BYTES: Final = 8192
_MAX_REASON_CHARS: Final = 512
# An error answer longer than this is sent as it comes, its entry written after.
_MAX_HELD_BYTES: Final = 1 << 20


def audited(action: str, *, target: str = "") -> dict[str, Any]:
    """`openapi_extra` of an audited route: its action and target, as
    templates over the path parameters (`rollout.{action}`, `{ref}`)."""
    return {AUDIT_ACTION: action, AUDIT_TARGET: target}


def not_audited(reason: str) -> dict[str, Any]:
    """`openapi_extra` of a non-GET route that writes no entry, and why."""
    return {NOT_AUDITED: reason}


def _fill(template: str, params: dict[str, Any]) -> str:
    try:
        return template.format_map({k: str(v)[:128] for k, v in params.items()})
    except (KeyError, IndexError, ValueError):
        return template


def _reason(status: int, body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])[:_MAX_REASON_CHARS]
    return f"HTTP {status}"


class AuditTrail:
    """ASGI: the request context for audit entries, and the entries of refusals."""

    def __init__(self, app: ASGIApp, state: HubState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        request = RequestAudit(source=str(client[0]) if client else "")
        status = 500
        body = bytearray()
        # A refusal's answer is held until its entry is written, so a caller
        # that reads the trail after its answer finds the entry there.
        held: list[Message] = []
        held_bytes = 0
        written = False

        async def capture(message: Message) -> None:
            nonlocal status, held_bytes, written
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                room = _MAX_ERROR_BYTES - len(body)
                if room > 0:
                    body.extend(message.get("body", b"")[:room])
            if status < 400 or written or _declared(scope) is None:
                await send(message)
                return
            held.append(message)
            held_bytes += len(message.get("body", b""))
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if last or held_bytes > _MAX_HELD_BYTES:
                written = True
                await self._after(scope, request, status, _reason(status, bytes(body)))
                for waiting in held:
                    await send(waiting)
                held.clear()

        token = begin_request(request)
        try:
            await self.app(scope, receive, capture)
        except Exception as exc:
            if not written:
                await self._after(scope, request, 500, f"internal error ({type(exc).__name__})")
            raise
        finally:
            end_request(token)
        if status >= 400 and not written:
            await self._after(scope, request, status, _reason(status, bytes(body)))
        elif status < 400 and request.recorded == 0 and _declared(scope) is not None:
            # A route that changed something and said nothing: the OpenAPI
            # walk in the tests should have caught it; the log says so now.
            event(log, "audit.unrecorded", logging.ERROR, path=scope["path"], status=status)

    async def _after(self, scope: Scope, request: RequestAudit, status: int, reason: str) -> None:
        declared = _declared(scope)
        if declared is None:  # no route, another method, or declared not audited
            return
        action, target = declared
        params = dict(scope.get("path_params") or {})
        outcome = "refused" if status < 500 else "failed"
        try:
            await run_in_threadpool(
                self._write,
                request,
                _fill(action, params),
                _fill(target, params) or scope["path"],
                outcome,
                status,
                reason,
            )
        except Exception as exc:  # the answer is sent; the log must say the entry is not
            event(
                log,
                "audit.write_failed",
                logging.ERROR,
                path=scope["path"],
                error=f"{type(exc).__name__}: {exc}",
            )

    def _write(
        self,
        request: RequestAudit,
        action: str,
        target: str,
        outcome: str,
        status: int,
        reason: str,
    ) -> None:
        with self.state.transaction() as session:
            record_audit(
                session,
                request.actor,
                action,
                target,
                outcome=outcome,
                source=request.source,
                status=status,
                reason=reason,
            )


def _declared(scope: Scope) -> tuple[str, str] | None:
    """The matched route's audit action and target templates; None when the
    request matched no route of its method or the route is not audited."""
    route = scope.get("route")
    methods = getattr(route, "methods", None) or ()
    if route is None or scope["method"] not in methods:
        return None
    extra = getattr(route, "openapi_extra", None) or {}
    action = extra.get(AUDIT_ACTION)
    if not isinstance(action, str):
        return None
    return action, str(extra.get(AUDIT_TARGET) or "")
