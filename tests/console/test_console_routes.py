"""Every console route against the permission table, with a session cookie of
every role; the session cookie, CSRF and refusals, over HTTP on a real hub.

The bearer-token walk (tests/hub/test_route_permissions.py) leaves /console
out: the console authenticates a cookie. This file walks what it left out.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fogline.hub import create_app
from fogline.hub._audit_trail import AUDIT_ACTION, NOT_AUDITED
from fogline.hub._permissions import ROUTE_PERMISSIONS, Access
from fogline.hub._serve import ServeOptions, build_hub
from fogline.security import Permission, Role, role_allows
from tests.hub.test_route_permissions import _routes_of
from tests.support.console import (
    SESSION_COOKIE,
    console_client,
    csrf_of,
    session_csrf,
    sign_in_with_password,
)
from tests.support.device import enroll_device
from tests.support.people import add_user, user_with_token
from tests.support.processes import HubProcess, start_hub

PLACEHOLDERS = {"ref": "no-such-thing", "name": "console.css", "action": "pause"}
CONSOLE = {key: need for key, need in ROUTE_PERMISSIONS.items() if key[1].startswith("/console")}


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PLACEHOLDERS[m[1]], path)


@pytest.fixture(scope="module")
def console_hub(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[HubProcess, dict[str, Any]]]:
    hub = start_hub(tmp_path_factory.mktemp("console") / "hub")
    try:
        tokens: dict[str, Any] = {"bootstrap": (Role.ADMIN, hub.token)}
        for role in Role:
            tokens[role.value] = (role, user_with_token(hub, f"console-{role.value}", role.value))
        yield hub, tokens
    finally:
        hub.stop()


def test_every_console_route_is_in_the_table_and_every_post_declares_its_audit() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        built = build_hub(ServeOptions(data_dir=Path(scratch) / "hub"))
        try:
            routes = [
                r
                for r in _routes_of(list(create_app(built.state).routes))
                if r.path.startswith("/console")
            ]
        finally:
            built.state.engine.dispose()
    served = {(m, r.path) for r in routes for m in r.methods if m != "HEAD"}
    assert served == set(CONSOLE)
    for route in routes:
        assert not route.include_in_schema, f"{route.path} is in the API document"
        if route.methods - {"GET", "HEAD"}:
            extra = route.openapi_extra or {}
            assert AUDIT_ACTION in extra or NOT_AUDITED in extra, route.path


def test_every_console_route_answers_every_role_as_the_table_says(
    console_hub: tuple[HubProcess, dict[str, Any]],
) -> None:
    hub, tokens = console_hub
    wrong: list[str] = []
    for (method, path), need in sorted(CONSOLE.items()):
        for who, (role, token) in tokens.items():
            with console_client(hub, token) as client:
                data = {"csrf": session_csrf(client)} if method == "POST" else None
                response = client.request(method, _url(path), data=data)
            status = response.status_code
            if need is Access.PUBLIC:
                ok = status == 200
            elif need is Access.PASSWORD:
                ok = status == 403  # no sign-in nonce cookie: the form is refused
            elif role_allows(role, need):
                ok = (
                    status not in (401, 403)
                    and status < 500
                    and "<title>Sign in" not in response.text
                )
            else:
                ok = status == 403 and f"permission &#39;{need.value}&#39;" in response.text
            if not ok:
                wrong.append(f"{method} {path} as {who} ({need}): {status} {response.text[:200]}")
        if isinstance(need, Permission):
            with console_client(hub) as nobody:
                response = nobody.request(method, _url(path))
            expected = 303 if method == "GET" else 401
            if response.status_code != expected:
                wrong.append(f"{method} {path} without a session: {response.status_code}")
            elif method == "GET" and response.headers["location"] != "/console/sign-in":
                wrong.append(f"{method} {path} redirects to {response.headers['location']}")
    assert not wrong, "\n".join(wrong)


def test_a_forged_or_edited_cookie_is_refused_and_forgotten(
    console_hub: tuple[HubProcess, dict[str, Any]],
) -> None:
    hub, tokens = console_hub
    real = tokens["admin"][1]
    forged = [real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB"), "fgt_x.y", "nonsense"]
    for cookie in forged:
        with console_client(hub, cookie) as client:
            page = client.get("/console")
            assert page.status_code == 303 and page.headers["location"] == "/console/sign-in"
            assert f'{SESSION_COOKIE}=""' in page.headers["set-cookie"]
            post = client.post("/console/rollouts/x/pause", data={"csrf": "whatever"})
            assert post.status_code == 401


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_audited(
    console_hub: tuple[HubProcess, dict[str, Any]], tmp_path: Path
) -> None:
    hub, tokens = console_hub
    device = enroll_device(hub, hub.create_claim(max_uses=1), "csrf-dev", tmp_path)
    operator = tokens["operator"][1]
    with console_client(hub, tokens["admin"][1]) as other:
        other_session_csrf = session_csrf(other)
    with console_client(hub, operator) as client:
        for data in (
            {"set": "a=b"},
            {"set": "a=b", "csrf": ""},
            {"set": "a=b", "csrf": other_session_csrf},
        ):
            refused = client.post(f"/console/devices/{device.device_id}/labels", data=data)
            assert refused.status_code == 403, refused.text
            assert "CSRF" in refused.text
        # JSON (what a cross-site fetch could send without a preflight is not
        # JSON; a form is the one shape accepted) is refused as well.
        json_post = client.post(f"/console/devices/{device.device_id}/labels", json={"set": "a=b"})
        assert json_post.status_code == 400
        ok = client.post(
            f"/console/devices/{device.device_id}/labels",
            data={"csrf": session_csrf(client), "set": "zone=north, tier=gold", "remove": ""},
        )
        assert ok.status_code == 303, ok.text
    assert hub.device(device.device_id)["labels"]["zone"] == "north"
    with hub.client() as admin:
        entries = admin.get("/v1/audit", params={"action": "device.label"}).json()
    outcomes = [
        (e["actor"], e["outcome"])
        for e in entries
        if e["target"] in (device.device_id, device.name)
    ]
    assert outcomes == [("user:console-operator", "refused")] * 4 + [
        ("user:console-operator", "ok")
    ]


def test_a_viewer_sees_no_button_and_a_scoped_operator_none_outside_its_scope(
    console_hub: tuple[HubProcess, dict[str, Any]], tmp_path: Path
) -> None:
    hub, tokens = console_hub
    device = enroll_device(
        hub, hub.create_claim(max_uses=1, labels="site=paris"), "scope-dev", tmp_path
    )
    scoped = user_with_token(hub, "console-berlin", "operator", {"site": "berlin"})
    pages = {}
    for who, token in (
        ("viewer", tokens["viewer"][1]),
        ("scoped", scoped),
        ("operator", tokens["operator"][1]),
    ):
        with console_client(hub, token) as client:
            pages[who] = client.get(f"/console/devices/{device.device_id}").text
    assert "Save labels" not in pages["viewer"] and "Save labels" not in pages["scoped"]
    assert "Save labels" in pages["operator"]
    with console_client(hub, scoped) as client:
        refused = client.post(
            f"/console/devices/{device.device_id}/labels",
            data={"csrf": session_csrf(client), "set": "site=berlin"},
        )
    assert refused.status_code == 403 and "scoped to selector" in refused.text
    assert hub.device(device.device_id)["labels"]["site"] == "paris"


def test_password_sign_in_sets_a_strict_cookie_and_sign_out_revokes_the_session(
    console_hub: tuple[HubProcess, dict[str, Any]],
) -> None:
    hub, _tokens = console_hub
    add_user(hub, "console-pw", "viewer", password="correct horse battery")
    with console_client(hub) as client:
        wrong = sign_in_with_password(client, "console-pw", "wrong password!")
        assert wrong.status_code == 401 and "wrong user or password" in wrong.text
        signed = sign_in_with_password(client, "console-pw", "correct horse battery")
        assert signed.status_code == 303 and signed.headers["location"] == "/console"
        cookie = next(
            c for c in signed.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
        )
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
        token = client.cookies.get(SESSION_COOKIE)
        assert token and token not in signed.headers["location"]
        overview = client.get("/console")
        assert overview.status_code == 200 and "user:console-pw" in overview.text
        assert "default-src 'none'" in overview.headers["content-security-policy"]
        out = client.post("/console/sign-out", data={"csrf": csrf_of(overview.text)})
        assert out.status_code == 303
    with console_client(hub, token) as again:
        assert again.get("/console").status_code == 303  # the session token is revoked
    assert token not in hub.log_text()
    with hub.client() as admin:
        actions = [
            e["action"] for e in admin.get("/v1/audit", params={"actor": "user:console-pw"}).json()
        ]
    assert "session.create" in actions and "session.end" in actions


def test_a_sign_in_post_without_its_nonce_cookie_is_refused(
    console_hub: tuple[HubProcess, dict[str, Any]],
) -> None:
    hub, tokens = console_hub
    with console_client(hub) as client:
        refused = client.post(
            "/console/sign-in", data={"csrf": "made-up", "token": tokens["admin"][1]}
        )
    assert refused.status_code == 403
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")


def test_the_device_list_searches_by_name_prefix_through_the_inventory(
    console_hub: tuple[HubProcess, dict[str, Any]], tmp_path: Path
) -> None:
    hub, tokens = console_hub
    claim = hub.create_claim(max_uses=3)
    for name in ("find-a1", "find-a2", "find-b1"):
        enroll_device(hub, claim, name, tmp_path)
    with console_client(hub, tokens["viewer"][1]) as client:
        found = client.get("/console/devices", params={"name": "find-a"}).text
        literal = client.get("/console/devices", params={"name": "find-%"}).text
        bad = client.get("/console/devices", params={"selector": "in (("})
    assert "find-a1" in found and "find-a2" in found and "find-b1" not in found
    assert "No device matches" in literal  # % is a character, not a wildcard
    assert bad.status_code == 422 and "selector" in bad.text


def test_the_deployments_page_shows_the_manifest_and_the_devices_it_selects(
    console_hub: tuple[HubProcess, dict[str, Any]], tmp_path: Path
) -> None:
    hub, tokens = console_hub
    enroll_device(hub, hub.create_claim(max_uses=1, labels="pick=me"), "picked-1", tmp_path)
    enroll_device(hub, hub.create_claim(max_uses=1, labels="pick=other"), "passed-1", tmp_path)
    manifest = tmp_path / "picky.yaml"
    manifest.write_text(
        "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata: {name: picky}\n"
        "spec:\n  priority: 7\n  selector:\n    matchExpressions:\n"
        "      - {key: pick, operator: In, values: [me]}\n  config: {a: 1}\n"
    )
    hub.cli("apply", "-f", str(manifest))
    with console_client(hub, tokens["viewer"][1]) as client:
        listing = client.get("/console/deployments").text
        shown = client.get("/console/deployments", params={"name": "picky"}).text
    assert "/console/deployments?name=picky" in listing
    assert "picked-1" in shown and "passed-1" not in shown
    assert "&#34;a&#34;: 1" in shown or '"a": 1' in shown  # the document, read-only
    assert "<form" not in shown.split("</header>")[1]  # nothing to change here


def test_the_telemetry_explorer_charts_a_field_and_escapes_what_devices_send(
    console_hub: tuple[HubProcess, dict[str, Any]], tmp_path: Path
) -> None:
    hub, tokens = console_hub
    device = enroll_device(hub, hub.create_claim(max_uses=1), "chatty-1", tmp_path)
    hostile = "<script>alert(1)</script>"
    device.upload([(i, "temps", {"value": 20.0 + i, "note": hostile}) for i in range(1, 6)])
    with console_client(hub, tokens["viewer"][1]) as client:
        page = client.get(
            "/console/telemetry", params={"device": "chatty-1", "stream": "temps", "since": "1h"}
        ).text
    assert hostile not in page
    assert "\\u003cscript\\u003e" in page  # tojson escapes <, > and & as well
    assert 'aria-label="temps: value"' in page and "<polyline" in page
    assert page.count("<tr>") >= 6  # the header and five records


def _sse_first_progress(client: Any, url: str) -> str:
    """The HTML of the first `progress` event of a console stream."""
    data: list[str] = []
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.read()[:300]
        assert response.headers["content-type"].startswith("text/event-stream")
        for number, line in enumerate(response.iter_lines()):
            assert number < 5_000, "no progress event in the stream's first lines"
            if line.startswith("data: "):
                data.append(line[len("data: ") :])
            elif line == "" and data:
                return "\n".join(data)
            elif line.startswith("event: ") and line != "event: progress":
                data = []
    raise AssertionError("the stream ended without a progress event")


def test_device_logs_are_escaped_bounded_and_read_as_the_api_allows(
    console_hub: tuple[HubProcess, dict[str, Any]], tmp_path: Path
) -> None:
    from fogline.hub._permissions import LOG_READING
    from fogline.hub.console._device_pages import LOG_LINE_BYTES, LOG_LINES

    hub, tokens = console_hub
    # One permission row decides log reading in the API and in the console.
    api_need = ROUTE_PERMISSIONS[("GET", "/v1/telemetry")]
    assert api_need == LOG_READING == CONSOLE[("GET", "/console/devices/{ref}/logs/events")]
    node = enroll_device(hub, hub.create_claim(max_uses=1), "logs-dev", tmp_path)
    lines = [f"line {i}" for i in range(LOG_LINES + 50)]
    lines[-2] = "x" * (LOG_LINE_BYTES * 3)
    lines[-1] = "<script>alert('owned')</script> & done"
    node.upload([(i + 1, "logs/web", {"stream": "stdout", "line": t}) for i, t in enumerate(lines)])
    node.upload([(1, "logs/_agent", {"stream": "stderr", "line": "agent: <b>warned</b>"})])
    page_url = f"/console/devices/{node.device_id}"
    for who, (role, token) in tokens.items():
        with console_client(hub, token) as client:
            page = client.get(page_url, params={"log": "web"})
        assert page.status_code == 200, page.text[:300]
        if not role_allows(role, api_need):
            assert "may not read logs" in page.text and "line 249" not in page.text, who
            continue
        shown = re.findall(r'<span class="log-line log-stdout">([^<]*)</span>', page.text)
        assert len(shown) == LOG_LINES, who  # the newest 200, oldest first
        assert shown[0] == "line 50" and "line 49<" not in page.text
        assert len(shown[-2].encode()) <= LOG_LINE_BYTES + 10 and shown[-2].endswith("[cut]")
        assert shown[-1] == "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; &amp; done"
        assert "<script>alert" not in page.text
    with console_client(hub, tokens["viewer"][1]) as client:
        agent = client.get(page_url).text  # the agent's log by default
        assert '<span class="log-line log-stderr">agent: &lt;b&gt;warned&lt;/b&gt;</span>' in agent
        assert f'data-live="{page_url}/logs/events?log=_agent"' in agent
        live = _sse_first_progress(client, f"{page_url}/logs/events?log=web")
        assert live.count('class="log-line') == LOG_LINES
        assert "&lt;script&gt;alert(" in live and "<script>" not in live
        for bad in ("../web", "a b", "x" * 65):
            refused = client.get(page_url, params={"log": bad})
            assert refused.status_code == 422, bad
            assert client.get(f"{page_url}/logs/events", params={"log": bad}).status_code == 422
        assert client.get("/console/devices/ghost/logs/events").status_code == 404


def test_a_live_view_ends_when_its_session_is_signed_out(
    console_hub: tuple[HubProcess, dict[str, Any]], tmp_path: Path
) -> None:
    """Each tick of a live section authenticates the session again: signing
    out elsewhere ends an open stream with `end: signed out`."""
    hub, _tokens = console_hub
    add_user(hub, "console-live", "viewer", password="correct horse battery")
    node = enroll_device(hub, hub.create_claim(max_uses=1), "live-dev", tmp_path)
    node.upload([(1, "logs/_agent", {"stream": "stdout", "line": "hello"})])
    with console_client(hub) as client:
        signed = sign_in_with_password(client, "console-live", "correct horse battery")
        assert signed.status_code == 303
        token = client.cookies.get(SESSION_COOKIE)
        assert token
        url = f"/console/devices/{node.device_id}/logs/events"
        with client.stream("GET", url) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert "event: progress" in _lines_until(lines, "event: progress")
            with console_client(hub, token) as other:
                out = other.post("/console/sign-out", data={"csrf": session_csrf(other)})
                assert out.status_code == 303
            rest = _lines_until(lines, "data: signed out")
    assert "event: end" in rest


def _lines_until(lines: Iterator[str], last: str, bound: int = 5_000) -> list[str]:
    """Lines of a stream up to and including `last` (the stream ticks once a second)."""
    seen: list[str] = []
    for line in lines:
        seen.append(line)
        if line == last:
            return seen
        assert len(seen) < bound, f"no {last!r} in the stream's first lines"
    raise AssertionError(f"the stream ended before {last!r}: {seen[-5:]}")
