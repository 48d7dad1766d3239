"""`fogline users`, `fogline tokens` and `fogline whoami` against a real hub,
and what a viewer sees when it tries to change the fleet."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import textwrap
from pathlib import Path

import yaml

from tests.support.processes import ENV, HubProcess, fogline_cmd

DEPLOYMENT = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: cli-roles}
    spec:
      selector: {matchLabels: {site: berlin}}
      config: {note: hello}
    """)


def fogline(
    hub: HubProcess, token: str, *args: str, stdin: str | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`fogline ARGS` against `hub` with `token` (FOGLINE_TOKEN), or with the
    context stored in `home` when token is empty."""
    env = {k: v for k, v in ENV.items() if not k.startswith("FOGLINE_")}
    env["COLUMNS"] = "200"
    if token:
        env |= {"FOGLINE_HUB": hub.url, "FOGLINE_CA": str(hub.ca), "FOGLINE_TOKEN": token}
    if home is not None:
        env["XDG_CONFIG_HOME"] = str(home)
    return subprocess.run(
        [*fogline_cmd(), *args], capture_output=True, text=True, env=env, input=stdin, timeout=60
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_viewer_reads_the_fleet_but_its_apply_is_one_clear_line(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    admin = shared_hub.token
    ok(fogline(shared_hub, admin, "users", "add", "ann", "--role", "viewer"))
    token = ok(
        fogline(shared_hub, admin, "tokens", "create", "--user", "ann", "--name", "laptop")
    ).strip()
    assert token.startswith("fgt_") and "\n" not in token

    me = ok(fogline(shared_hub, token, "whoami", "-o", "table"))
    assert "user:ann" in me and "viewer" in me and "the whole fleet" in me
    assert json.loads(ok(fogline(shared_hub, token, "devices", "ls", "-o", "json"))) == []

    manifest = tmp_path / "fleet.yaml"
    manifest.write_text(DEPLOYMENT)
    refused = fogline(shared_hub, token, "apply", "-f", str(manifest))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "403" in refused.stderr and "user:ann has role viewer" in refused.stderr
    assert "permission 'apply'" in refused.stderr and "release-manager and admin" in refused.stderr
    escalate = fogline(shared_hub, token, "users", "set-role", "ann", "admin")
    assert escalate.returncode == 1 and "403" in escalate.stderr

    [listed] = json.loads(ok(fogline(shared_hub, admin, "tokens", "ls", "--user", "ann")))
    assert listed["status"] == "active" and listed["last_used_at"] is not None
    assert "token" not in listed  # never the token itself
    users = {u["name"]: u for u in json.loads(ok(fogline(shared_hub, admin, "users", "ls")))}
    assert users["ann"]["role"] == "viewer" and users["ann"]["tokens"] == 1

    ok(fogline(shared_hub, admin, "tokens", "revoke", listed["id"]))
    revoked = fogline(shared_hub, token, "devices", "ls")
    assert revoked.returncode == 1 and "revoked" in revoked.stderr


def test_set_role_with_a_scope_and_rm(shared_hub: HubProcess) -> None:
    admin = shared_hub.token
    ok(fogline(shared_hub, admin, "users", "add", "ben", "--role", "viewer"))
    token = ok(fogline(shared_hub, admin, "tokens", "create", "--user", "ben", "--name", "ci"))
    set_role = ("users", "set-role", "ben", "operator", "--scope", "site=berlin", "-o", "json")
    changed = ok(fogline(shared_hub, admin, *set_role))
    [row] = json.loads(changed)
    assert (row["role"], row["scope"], row["tokens"]) == ("operator", {"site": "berlin"}, 1)
    table = ok(fogline(shared_hub, admin, "users", "ls", "-o", "table"))
    assert "site=berlin" in table and "operator" in table
    me = json.loads(ok(fogline(shared_hub, token.strip(), "whoami", "-o", "json")))
    assert (me["role"], me["scope"]) == ("operator", {"site": "berlin"})
    assert "label" in me["permissions"] and "apply" not in me["permissions"]
    ok(fogline(shared_hub, admin, "users", "rm", "ben"))
    gone = fogline(shared_hub, token.strip(), "whoami")
    assert gone.returncode == 1 and "401" in gone.stderr
    bad = fogline(shared_hub, admin, "users", "add", "cy", "--role", "root")
    assert bad.returncode == 2 and "viewer, operator, release-manager, admin" in bad.stderr


def test_password_stdin_stores_only_an_argon2id_hash(shared_hub: HubProcess) -> None:
    admin = shared_hub.token
    password = "a long and private passphrase"
    added = fogline(
        shared_hub, admin, "users", "add", "dora", "--role", "operator", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert password not in added.stdout + added.stderr
    users = {u["name"]: u for u in json.loads(ok(fogline(shared_hub, admin, "users", "ls")))}
    assert users["dora"]["has_password"] is True
    db = f"file:{shared_hub.data_dir / 'hub.db'}?mode=ro"
    with sqlite3.connect(db, uri=True) as connection:
        [(stored,)] = connection.execute("SELECT password_hash FROM users WHERE name = 'dora'")
    assert stored.startswith("$argon2id$") and password not in stored
    short = fogline(
        shared_hub, admin, "users", "add", "eve", "--role", "viewer", "--password-stdin",
        stdin="short\n",
    )  # fmt: skip
    assert short.returncode == 2 and "8 to 1024 characters" in short.stderr


def test_login_with_a_user_token_keeps_it_private_and_names_the_user(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    admin = shared_hub.token
    ok(fogline(shared_hub, admin, "users", "add", "finn", "--role", "release-manager"))
    token_file = tmp_path / "finn.token"
    token = ok(fogline(shared_hub, admin, "tokens", "create", "--user", "finn", "--name", "desk"))
    token_file.write_text(token)
    token_file.chmod(0o600)
    home = tmp_path / "config"
    login = fogline(
        shared_hub, "", "login", "--hub", shared_hub.url, "--ca", str(shared_hub.ca),
        "--token-file", str(token_file), home=home,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert "as user:finn (release-manager)" in login.stderr
    config = home / "fogline" / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    [context] = yaml.safe_load(config.read_text())["contexts"]
    assert context["user"] == "user:finn"
    me = ok(fogline(shared_hub, "", "whoami", "-o", "table", home=home))
    assert "user:finn" in me and "release-manager" in me
