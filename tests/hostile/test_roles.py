"""Roles, scopes and API tokens against a real hub (issue #14): a token does
what its role allows and no more, a scoped role stays inside its selector,
and a token stops working when it expires, is revoked or its user goes.
Hostile cases: expired, revoked, forged and malformed tokens, and a
non-admin trying to raise its own role."""

from __future__ import annotations

import datetime as dt
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.device import enroll_device
from tests.support.people import add_user, as_token, new_token, user_with_token
from tests.support.processes import HubProcess, start_hub, tls, wait_until


def deployment(name: str, match_labels: dict[str, str], priority: int = 0) -> str:
    selector = ", ".join(f"{k}: {v}" for k, v in match_labels.items())
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          selector: {{matchLabels: {{{selector}}}}}
          priority: {priority}
          config: {{note: {name}}}
        """)


def _manifests(*texts: str, prune: bool = False) -> dict[str, Any]:
    return {
        "files": [{"name": f"m{i}.yaml", "text": text} for i, text in enumerate(texts)],
        "prune": prune,
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with one device in Berlin and one in Paris."""
    root = tmp_path_factory.mktemp("roles")
    hub = start_hub(root / "hub")
    try:
        for site in ("berlin", "paris"):
            claim = hub.create_claim(labels=f"site={site}", max_uses=1)
            enroll_device(hub, claim, f"{site}-1", root)
        yield hub
    finally:
        hub.stop()


def _labels(hub: HubProcess, device: str) -> dict[str, str]:
    labels = hub.device(device)["labels"]
    return {k: v for k, v in labels.items() if not k.startswith("fogline.dev/")}


def test_a_scoped_operator_labels_only_devices_inside_its_selector(fleet: HubProcess) -> None:
    token = user_with_token(fleet, "op-berlin", "operator", {"site": "berlin"})
    with as_token(fleet, token) as client:
        paris = client.patch("/v1/devices/paris-1/labels", json={"set": {"zone": "a"}})
        assert paris.status_code == 403, paris.text
        assert paris.json()["message"] == (
            "user:op-berlin is scoped to selector site=berlin: device 'paris-1' is outside "
            "that selector"
        )
        # Moving a Berlin device to Paris would take it out of the scope.
        moved = client.patch("/v1/devices/berlin-1/labels", json={"set": {"site": "paris"}})
        assert moved.status_code == 403, moved.text
        inside = client.patch("/v1/devices/berlin-1/labels", json={"set": {"zone": "a"}})
        assert inside.status_code == 200, inside.text
    assert _labels(fleet, "paris-1") == {"site": "paris"}
    assert _labels(fleet, "berlin-1") == {"site": "berlin", "zone": "a"}
    # The audit log names the person, not a shared token.
    with fleet.client() as admin:
        entries = admin.get("/v1/audit").json()
    labelled = [e for e in entries if e["action"] == "device.label" and e["target"] == "berlin-1"]
    assert labelled and labelled[-1]["actor"] == "user:op-berlin"


def test_a_scoped_release_manager_applies_only_deployments_inside_its_selector(
    fleet: HubProcess,
) -> None:
    token = user_with_token(fleet, "rm-berlin", "release-manager", {"site": "berlin"})
    outside = _manifests(deployment("rm-paris", {"site": "paris"}))
    everywhere = _manifests(deployment("rm-all", {"tier": "gold"}))
    inside = _manifests(deployment("rm-berlin", {"site": "berlin", "line": "press"}))
    with as_token(fleet, token) as client:
        for path in ("/v1/manifests/plan", "/v1/manifests/apply"):
            for body, name in ((outside, "rm-paris"), (everywhere, "rm-all")):
                response = client.post(path, json=body)
                assert response.status_code == 403, (path, response.text)
                message = response.json()["message"]
                assert "selector site=berlin" in message and repr(name) in message, message
        applied = client.post("/v1/manifests/apply", json=inside)
        assert applied.status_code == 200, applied.text
    with fleet.client() as admin:
        names = {d["name"] for d in admin.get("/v1/deployments").json()}
        assert "rm-berlin" in names and not names & {"rm-paris", "rm-all"}
        # One the admin applied in Paris: the scoped role can neither take it
        # over (same name, Berlin selector), prune it, nor delete it.
        admin_applied = admin.post(
            "/v1/manifests/apply", json=_manifests(deployment("paris-cfg", {"site": "paris"}))
        )
        assert admin_applied.status_code == 200, admin_applied.text
    with as_token(fleet, token) as client:
        takeover = client.post(
            "/v1/manifests/apply",
            json=_manifests(deployment("paris-cfg", {"site": "berlin"}, priority=5)),
        )
        assert takeover.status_code == 403 and "paris-cfg" in takeover.json()["message"]
        pruned = client.post("/v1/manifests/apply", json={**inside, "prune": True})
        assert pruned.status_code == 403 and "paris-cfg" in pruned.json()["message"]
        deleted = client.delete("/v1/deployments/paris-cfg")
        assert deleted.status_code == 403, deleted.text
        key = textwrap.dedent("""\
            apiVersion: fogline.dev/v1
            kind: ReleaseKey
            metadata: {name: berlin-key}
            spec: {publicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}
            """)
        fleet_wide = client.post("/v1/manifests/apply", json=_manifests(key))
        assert fleet_wide.status_code == 403 and "fleet-wide" in fleet_wide.json()["message"]
    with fleet.client() as admin:
        assert admin.get("/v1/deployments/paris-cfg").json()["document"]["spec"]["selector"] == {
            "matchLabels": {"site": "paris"}
        }


def test_a_scoped_operator_cannot_steer_a_rollout_outside_its_selector(
    fleet: HubProcess,
) -> None:
    with fleet.client() as admin:
        applied = admin.post(
            "/v1/manifests/apply",
            json=_manifests(deployment("paris-roll", {"site": "paris"}, priority=7)),
        )
        assert applied.status_code == 200, applied.text
    [rollout] = applied.json()["rollouts"]
    token = user_with_token(fleet, "op-berlin-2", "operator", {"site": "berlin"})
    with as_token(fleet, token) as client:
        refused = client.post(f"/v1/rollouts/{rollout}/abort")
    assert refused.status_code == 403 and "paris-1" in refused.json()["message"], refused.text


def test_an_expired_token_is_refused_and_says_so(fleet: HubProcess) -> None:
    add_user(fleet, "brief", "viewer")
    token = new_token(fleet, "brief", expires_in_s=1.5)

    def status() -> int:
        with as_token(fleet, token) as client:
            return client.get("/v1/devices").status_code

    assert status() == 200
    wait_until(lambda: status() == 401, 10, "the token to expire")
    with as_token(fleet, token) as client:
        assert "expired" in client.get("/v1/devices").json()["message"]
    with fleet.client() as admin:
        [view] = admin.get("/v1/tokens", params={"user": "brief"}).json()
    assert view["status"] == "expired"


def test_revocation_and_user_removal_take_effect_on_the_next_request(
    fleet: HubProcess,
) -> None:
    token = user_with_token(fleet, "leaver", "operator")
    other = new_token(fleet, "leaver", name="second")
    with as_token(fleet, token) as client:
        assert client.get("/v1/whoami").json()["name"] == "user:leaver"
        token_id = client.get("/v1/whoami").json()["token"]["id"]
    with fleet.client() as admin:
        assert admin.post(f"/v1/tokens/{token_id}/revoke").status_code == 200
    with as_token(fleet, token) as client:
        refused = client.get("/v1/devices")
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    with as_token(fleet, other) as client:
        assert client.get("/v1/devices").status_code == 200
    with fleet.client() as admin:
        assert admin.delete("/v1/users/leaver").status_code == 200
    with as_token(fleet, other) as client:
        assert client.get("/v1/devices").status_code == 401


def test_a_role_change_takes_effect_on_the_next_request(fleet: HubProcess) -> None:
    token = user_with_token(fleet, "promoted", "viewer")
    label = {"set": {"checked": "yes"}}
    with as_token(fleet, token) as client:
        assert client.patch("/v1/devices/paris-1/labels", json=label).status_code == 403
    with fleet.client() as admin:
        changed = admin.patch("/v1/users/promoted", json={"role": "operator"})
        assert changed.status_code == 200, changed.text
    with as_token(fleet, token) as client:
        assert client.patch("/v1/devices/paris-1/labels", json=label).status_code == 200


def test_last_use_is_recorded(fleet: HubProcess) -> None:
    token = user_with_token(fleet, "counted", "viewer")
    with fleet.client() as admin:
        [before] = admin.get("/v1/tokens", params={"user": "counted"}).json()
    assert before["last_used_at"] is None
    with as_token(fleet, token) as client:
        assert client.get("/v1/devices").status_code == 200
    with fleet.client() as admin:
        [after] = admin.get("/v1/tokens", params={"user": "counted"}).json()
    assert after["last_used_at"] is not None and after["last_used_at"] >= after["created_at"]


def _database_bytes(hub: HubProcess) -> bytes:
    return b"".join(path.read_bytes() for path in hub.data_dir.glob("hub.db*") if path.is_file())


def test_neither_tokens_nor_passwords_are_stored_in_clear(fleet: HubProcess) -> None:
    password = "correct horse battery staple"
    add_user(fleet, "secretive", "viewer", password=password)
    token = new_token(fleet, "secretive")
    secret = token.split(".", 1)[1]
    stored = _database_bytes(fleet)
    assert secret.encode() not in stored and password.encode() not in stored
    with sqlite3.connect(f"file:{fleet.data_dir / 'hub.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT * FROM tokens WHERE user_name = 'secretive'").fetchall()
        [(password_hash,)] = db.execute(
            "SELECT password_hash FROM users WHERE name = 'secretive'"
        ).fetchall()
    assert rows and not any(secret in str(value) for row in rows for value in row)
    assert password_hash.startswith("$argon2id$") and password not in password_hash
    # The bootstrap admin token is hashed the same way.
    assert fleet.token.split(".", 1)[1].encode() not in _database_bytes(fleet)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), id="wrong-secret"
        ),
        pytest.param(lambda t: "fgt_aaaaaaaaaaaa." + t.split(".", 1)[1], id="unknown-id"),
        pytest.param(lambda t: t.replace("fgt_", "fga_", 1), id="admin-prefix"),
        pytest.param(lambda t: t.split(".", 1)[0], id="no-secret"),
        pytest.param(lambda t: "admin", id="bare-name"),
        pytest.param(lambda t: t + "x" * 300, id="oversized"),
    ],
)
def test_a_forged_token_is_refused(
    fleet: HubProcess, forge: Any, request: pytest.FixtureRequest
) -> None:
    token = user_with_token(fleet, f"forged-{request.node.callspec.id}", "admin")
    with as_token(fleet, forge(token)) as client:
        response = client.get("/v1/devices")
    assert response.status_code == 401, response.text
    assert response.json()["message"] == "invalid token"


def test_a_non_admin_cannot_raise_its_own_role(fleet: HubProcess) -> None:
    token = user_with_token(fleet, "climber", "release-manager")
    assert add_user(fleet, "boss", "admin")["role"] == "admin"
    with as_token(fleet, token) as client:
        attempts = [
            client.patch("/v1/users/climber", json={"role": "admin"}),
            client.post("/v1/users", json={"name": "climber2", "role": "admin"}),
            client.post("/v1/tokens", json={"user": "boss", "name": "stolen"}),
            client.post("/v1/tokens", json={"user": "climber", "name": "extra"}),
            client.post("/v1/claims", json={"labels": {"site": "x"}}),
        ]
        for response in attempts:
            assert response.status_code == 403, response.text
            assert "release-manager" in response.json()["message"]
        me = client.get("/v1/whoami").json()
    assert me["role"] == "release-manager"
    with fleet.client() as admin:
        users = {u["name"]: u for u in admin.get("/v1/users").json()}
    assert "climber2" not in users and users["boss"]["tokens"] == 0


def test_an_admin_cannot_be_scoped(fleet: HubProcess) -> None:
    with fleet.client() as admin:
        response = admin.post(
            "/v1/users", json={"name": "scoped-admin", "role": "admin", "scope": {"site": "x"}}
        )
    assert response.status_code == 422 and response.json()["details"][0]["field"] == "scope"


def test_the_bootstrap_admin_token_still_works_and_is_not_revocable_by_id(
    fleet: HubProcess,
) -> None:
    with fleet.client() as admin:
        me = admin.get("/v1/whoami").json()
        assert (me["name"], me["role"], me["user"]) == ("admin", "admin", None)
        refused = admin.post(f"/v1/tokens/{me['token']['id']}/revoke")
        assert refused.status_code == 422 and "rotate-admin-token" in refused.json()["message"]
        assert admin.get("/v1/devices").status_code == 200


def _sign_in(hub: HubProcess, user: str, password: str) -> Any:
    with httpx.Client(base_url=hub.url, verify=tls(hub.ca), timeout=30) as client:
        return client.post("/v1/sessions", json={"user": user, "password": password})


def test_a_console_sign_in_gives_a_short_lived_token_of_the_users_role(
    fleet: HubProcess,
) -> None:
    password = "a passphrase for the console"
    add_user(fleet, "signer", "operator", {"site": "berlin"}, password=password)
    add_user(fleet, "tokens-only", "viewer")
    signed = _sign_in(fleet, "signer", password)
    assert signed.status_code == 201, signed.text
    token, view = signed.json()["token"], signed.json()["view"]
    assert view["name"] == "console-session" and view["user"] == "signer"
    lifetime = dt.datetime.fromisoformat(view["expires_at"]) - dt.datetime.fromisoformat(
        view["created_at"]
    )
    assert lifetime == dt.timedelta(hours=12)
    with as_token(fleet, token) as client:
        me = client.get("/v1/whoami").json()
    assert (me["name"], me["role"], me["scope"]) == ("user:signer", "operator", {"site": "berlin"})
    # A wrong password, a user without one and an unknown user answer alike.
    for user, guess in (("signer", password + "!"), ("tokens-only", password), ("nobody", "x")):
        refused = _sign_in(fleet, user, guess)
        assert refused.status_code == 401, refused.text
        assert refused.json()["message"] == "wrong user or password"
    assert password not in fleet.log_text()


def test_a_release_manager_cannot_mint_a_claim_through_a_manifest(fleet: HubProcess) -> None:
    token = user_with_token(fleet, "rm-claims", "release-manager")
    claim = textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: ProvisioningClaim
        metadata: {name: sneaky}
        spec: {labels: {site: berlin}, maxUses: 100, expires: 24h}
        """)
    with as_token(fleet, token) as client:
        refused = client.post("/v1/manifests/apply", json=_manifests(claim))
    assert refused.status_code == 403, refused.text
    assert "ProvisioningClaim 'sneaky'" in refused.json()["message"]
    assert "only admin has" in refused.json()["message"]
    with fleet.client() as admin:
        assert all(c["name"] != "sneaky" for c in admin.get("/v1/claims").json())


def test_users_and_tokens_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """PostgreSQL enforces column lengths SQLite ignores: the longest user name
    applies, is audited, and its token is revoked like on SQLite."""
    hub = start_hub(tmp_path / "hub", db_url=postgres_url)
    try:
        name = "a" * 58
        token = user_with_token(hub, name, "release-manager")
        with as_token(hub, token) as client:
            applied = client.post(
                "/v1/manifests/apply", json=_manifests(deployment("long-name", {"site": "x"}))
            )
            assert applied.status_code == 200, applied.text
            token_id = client.get("/v1/whoami").json()["token"]["id"]
        with hub.client() as admin:
            assert admin.get("/v1/deployments/long-name").json()["applied_by"] == f"user:{name}"
            [view] = admin.get("/v1/tokens", params={"user": name}).json()
            assert view["last_used_at"] is not None
            assert admin.post(f"/v1/tokens/{token_id}/revoke").status_code == 200
        with as_token(hub, token) as client:
            assert client.get("/v1/devices").status_code == 401
    finally:
        hub.stop()
