"""`fogline login` and `fogline config`: a hub, its CA and a token stored once per user."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import orjson
import pytest
import yaml

from tests.support.processes import ENV, HubProcess, fogline_cmd


def fogline(
    config_home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`fogline` as a user with no FOGLINE_* variables set, in their own config home."""
    bare = {k: v for k, v in ENV.items() if not k.startswith("FOGLINE_")}
    return subprocess.run(
        [*fogline_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**bare, "XDG_CONFIG_HOME": str(config_home), "COLUMNS": "200", **(env or {})},
    )


def login(hub: HubProcess, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    token_file = hub.data_dir / "admin-token"
    result = fogline(
        home, "login", "--hub", hub.url, "--ca", str(hub.ca), "--token-file", str(token_file),
        *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_login_stores_a_private_context_that_commands_use_without_variables(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    home = tmp_path / "config"
    before = fogline(home, "devices", "ls", "-o", "json")
    assert before.returncode == 1 and "fogline login" in before.stderr

    result = login(shared_hub, home)
    config = home / "fogline" / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert f"127.0.0.1:{shared_hub.port}" in result.stderr  # the default context name

    listed = fogline(home, "devices", "ls", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)

    shown = [fogline(home, "config", "ls", "-o", o) for o in ("json", "table")]
    for output in (result, *shown):
        assert shared_hub.token not in output.stdout + output.stderr
    (row,) = json.loads(shown[0].stdout)
    assert row == {
        "current": True,
        "name": f"127.0.0.1:{shared_hub.port}",
        "hub": shared_hub.url,
        "ca": str(shared_hub.ca.resolve()),
        "user": "admin",  # who the hub took the token for (GET /v1/whoami)
        "token": "stored",
    }
    assert shared_hub.token in config.read_text()  # stored, for the commands to send


def test_a_login_that_the_hub_refuses_stores_nothing(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    home, token_file = tmp_path / "config", tmp_path / "token"
    token_file.write_text("fga_aaaaaaaaaaaa." + "b" * 43)
    token_file.chmod(0o600)
    result = fogline(
        home, "login", "--hub", shared_hub.url, "--ca", str(shared_hub.ca),
        "--token-file", str(token_file),
    )  # fmt: skip
    assert result.returncode == 1 and "401" in result.stderr
    assert not (home / "fogline" / "config.yaml").exists()


def test_variables_win_and_a_context_token_never_goes_to_another_hub(
    shared_hub: HubProcess, hub: HubProcess, tmp_path: Path
) -> None:
    home = tmp_path / "config"
    login(shared_hub, home)
    # Another hub named by FOGLINE_HUB: the context (its token, its CA) is not used.
    other = fogline(home, "devices", "ls", env={"FOGLINE_HUB": hub.url, "FOGLINE_CA": str(hub.ca)})
    assert other.returncode == 1 and "no operator token" in other.stderr
    # The context's own hub with another token: the variable's token is sent.
    wrong = fogline(home, "devices", "ls", env={"FOGLINE_TOKEN": "fga_aaaaaaaaaaaa." + "b" * 43})
    assert wrong.returncode == 1 and "401" in wrong.stderr
    # An option names the other hub: it wins too, with the variables' token.
    right = fogline(
        home, "devices", "ls", "-o", "json", "--hub", hub.url, "--ca", str(hub.ca),
        env={"FOGLINE_TOKEN": hub.token},
    )  # fmt: skip
    assert right.returncode == 0, right.stderr


def test_config_use_switches_contexts_and_keeps_what_it_does_not_know(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    home = tmp_path / "config"
    login(shared_hub, home, "--name", "plant7")
    login(shared_hub, home, "--name", "lab")
    config = home / "fogline" / "config.yaml"
    document = yaml.safe_load(config.read_text())
    document["contexts"][0]["user"] = "ops-alice"  # edited by hand: kept as written
    document["contexts"][0]["role-hint"] = "viewer"  # a key this version does not know
    config.write_text(yaml.safe_dump(document))

    used = fogline(home, "config", "use", "plant7")
    assert used.returncode == 0 and "plant7" in used.stdout
    rows = json.loads(fogline(home, "config", "ls", "-o", "json").stdout)
    assert [(r["name"], r["current"], r["user"]) for r in rows] == [
        ("plant7", True, "ops-alice"),
        ("lab", False, "admin"),  # login stores whom the hub took the token for
    ]
    kept = yaml.safe_load(config.read_text())["contexts"][0]
    assert kept["role-hint"] == "viewer" and kept["user"] == "ops-alice"
    assert fogline(home, "devices", "ls", "-o", "json").returncode == 0

    unknown = fogline(home, "config", "use", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1 and "plant7, lab" in unknown.stderr
    assert fogline(home, "config", "rm", "plant7").returncode == 0
    rows = json.loads(fogline(home, "config", "ls", "-o", "json").stdout)
    assert [(r["name"], r["current"]) for r in rows] == [("lab", False)]
    none = fogline(home, "devices", "ls")
    assert none.returncode == 1 and "no hub" in none.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_config_file_that_others_can_read_is_refused(
    shared_hub: HubProcess, tmp_path: Path, mode: int
) -> None:
    home = tmp_path / "config"
    login(shared_hub, home)
    config = home / "fogline" / "config.yaml"
    config.chmod(mode)
    result = fogline(home, "devices", "ls")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"mode {mode:04o}" in result.stderr and f"chmod 600 {config}" in result.stderr


def test_a_json_config_file_is_read_too(shared_hub: HubProcess, tmp_path: Path) -> None:
    home = tmp_path / "config"
    (home / "fogline").mkdir(parents=True, mode=0o700)
    config = home / "fogline" / "config.json"
    context = {"name": "j", "hub": shared_hub.url, "ca": str(shared_hub.ca)}
    document = {"current-context": "j", "contexts": [{**context, "token": shared_hub.token}]}
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, orjson.dumps(document))
    os.close(fd)
    result = fogline(home, "devices", "ls", "-o", "json")
    assert result.returncode == 0, result.stderr
