"""A fleet outlives its hub: destroyed, restored from a backup taken mid-rollout.

Real hub, real agents running a real module, SQLite and PostgreSQL. The
backup is taken while a staged rollout runs and the agents report; then the
hub is killed, its data directory deleted (and its database dropped), and a
hub restored from the backup into a new directory (and a new database) on
the same port. The agents reconnect with the identities they have, nobody
enrolls again, and the rollout finishes on the restored hub.
"""

from __future__ import annotations

import hashlib
import shutil
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

from tests.support.backup import hub_backup, hub_restore
from tests.support.postgres import create_database
from tests.support.processes import AgentProcess, HubProcess, list_devices, start_hub, wait_until

NODES = ("node-a", "node-b", "node-c")
IDLE = "import time\nwhile True:\n    time.sleep(3600)\n"


def _push_idle(hub: HubProcess, tmp_path: Path, key: Path, version: str) -> None:
    source = tmp_path / f"idle-{version}"
    source.mkdir()
    (source / "fogline-module.yaml").write_text(
        textwrap.dedent(f"""\
        name: idle
        version: {version}
        command: [python3, idle.py]
        health: {{uptime: 1s, interval: 500ms}}
        startGrace: 500ms
        stopGrace: 2s
        restart: {{policy: always, backoff: {{initial: 200ms, max: 2s}}}}
        architectures: [any]
        """)
    )
    (source / "idle.py").write_text(IDLE)
    archive = tmp_path / f"idle-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


def _deployment(version: str, rollout: str | None = None) -> str:
    text_ = textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: idle}}
        spec:
          selector: {{}}
          modules:
            - name: idle
              release: idle@{version}
        """)
    return text_ + (f"  rollout: {rollout}\n" if rollout else "")


def _apply(hub: HubProcess, tmp_path: Path, manifest: str) -> None:
    path = tmp_path / f"deploy-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(manifest)
    hub.cli("apply", "-f", str(path))


def _rollout(hub: HubProcess) -> dict[str, Any]:
    with hub.client() as client:
        response = client.get("/v1/rollouts/idle")
    response.raise_for_status()
    return dict(response.json())


def _devices(hub: HubProcess) -> dict[str, dict[str, Any]]:
    with hub.client() as client:
        return {d["name"]: d for d in list_devices(client)}


def _runs(hub: HubProcess, name: str, version: str) -> bool:
    modules = (hub.device(name).get("reported") or {}).get("modules") or {}
    idle = (modules.get("modules") or {}).get("idle") or {}
    return bool(idle.get("version") == version and idle.get("state") == "healthy")


def _identities(db_url: str) -> dict[str, tuple[str, str, str]]:
    """name -> (id, certificate serial, enrolled at), read from the hub's database."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, id, cert_serial, enrolled_at FROM devices"))
            return {name: (id_, serial, str(at)) for name, id_, serial, at in rows}
    finally:
        engine.dispose()


def _drop_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_fleet_keeps_working_after_its_hub_is_destroyed_and_restored_mid_rollout(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pg_server = request.getfixturevalue("postgres_server") if backend == "postgresql" else None
    old_db = create_database(pg_server, f"old_{uuid.uuid4().hex[:10]}") if pg_server else None
    hub = start_hub(tmp_path / "old" / "hub", db_url=old_db)
    key = hub.trust_new_key(tmp_path / "keys")
    for version in ("1.0.0", "2.0.0"):
        _push_idle(hub, tmp_path, key, version)
    claim = hub.create_claim(max_uses=len(NODES))
    agents = [AgentProcess(tmp_path / "nodes" / n, hub, n, claim) for n in NODES]
    for agent in agents:
        agent.start()
    for agent in agents:
        agent.wait_enrolled()
    _apply(hub, tmp_path, _deployment("1.0.0"))
    wait_until(lambda: _rollout(hub)["state"] == "completed", 90, "1.0.0 on every node")

    # A staged rollout, slow enough to be running while the backup is taken.
    _apply(hub, tmp_path, _deployment("2.0.0", "{waves: [1, 2, 100%], bake: 5s, waveTimeout: 60s}"))
    assert _rollout(hub)["state"] == "running"
    seen_before = {n: d["last_seen"] for n, d in _devices(hub).items()}
    backup = tmp_path / "hub.backup"
    made = hub_backup(hub.data_dir, backup, db_url=old_db)
    assert made.returncode == 0, made.stderr
    assert "backup written" in made.stderr
    during = _rollout(hub)
    assert during["state"] == "running" and during["current_wave"] < during["waves_total"], during
    # The agents were reporting meanwhile.
    wait_until(
        lambda: all(d["last_seen"] != seen_before[n] for n, d in _devices(hub).items()),
        15,
        "reports while the backup ran",
    )

    old_db_url = old_db or f"sqlite:///{hub.data_dir / 'hub.db'}"
    identities = _identities(old_db_url)
    certs = {a.name: _sha256(a.data_dir / "identity" / "cert.pem") for a in agents}
    ca_pem, token, port = hub.ca.read_bytes(), hub.token, hub.port

    # Destroy the hub: process, data directory, database.
    hub.kill()
    shutil.rmtree(hub.data_dir)
    if old_db:
        _drop_database(old_db)

    new_db = create_database(pg_server, f"new_{uuid.uuid4().hex[:10]}") if pg_server else None
    new_dir = tmp_path / "restored" / "hub"
    restored = hub_restore(backup, new_dir, db_url=new_db)
    assert restored.returncode == 0, restored.stderr
    assert "restored into" in restored.stderr
    for key_file in ("ca-key.pem", "admin-token", "tls/hub-key.pem"):
        assert (new_dir / key_file).stat().st_mode & 0o777 == 0o600, key_file
    assert (new_dir / "ca.pem").read_bytes() == ca_pem

    new_hub = HubProcess(new_dir, port, new_db)
    new_hub.start()
    try:
        assert new_hub.token == token  # the same admin token, from the same file
        assert set(_devices(new_hub)) == set(NODES)
        new_db_url = new_db or f"sqlite:///{new_dir / 'hub.db'}"
        assert _identities(new_db_url) == identities
        # The rollout that was running goes on and finishes on the restored hub.
        assert _rollout(new_hub)["state"] == "running"
        restarted = _devices(new_hub)
        wait_until(
            lambda: all(
                d["last_seen"] != restarted[n]["last_seen"] for n, d in _devices(new_hub).items()
            ),
            90,
            "every agent to report to the restored hub",
        )
        done = wait_until(
            lambda: (view := _rollout(new_hub))["state"] in ("completed", "paused") and view,
            150,
            "the rollout to finish on the restored hub",
        )
        assert done["state"] == "completed" and done["succeeded"] == len(NODES), done
        for name in NODES:
            wait_until(lambda name=name: _runs(new_hub, name, "2.0.0"), 30, f"{name} on 2.0.0")

        # Nobody enrolled again: same ids, serials and enrollment times in the
        # hub's database, the same certificate on every node, one enrollment
        # in each agent's log, none in the restored hub's.
        assert _identities(new_db_url) == identities
        for agent in agents:
            assert _sha256(agent.data_dir / "identity" / "cert.pem") == certs[agent.name]
            assert agent.log_path.read_text().count('"agent.enrolled"') == 1, agent.log_text()
        assert "device.enrolled" not in new_hub.log_path.read_text()
        assert "device.enroll_refused" not in new_hub.log_path.read_text()
    finally:
        for agent in agents:
            agent.stop()
        new_hub.stop()
