"""Migration 0008 upgrades a database with devices in it, on SQLite and PostgreSQL."""

import datetime as dt
import json

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from fogline.hub import make_engine
from fogline.hub._db import MIGRATIONS_DIR, make_session_factory, upgrade_schema
from fogline.hub._device_labels import effective_labels
from fogline.hub._schema import ClaimRow, DesiredStateRow, DeviceRow, RevokedKeyRow

T0 = dt.datetime(2030, 1, 1, 12, 0, 0)
MODULE_V1 = {"name": "web", "version": "1.0.0", "digest": "sha256:" + "1" * 64}
MODULE_V2 = {"name": "web", "version": "2.0.0", "digest": "sha256:" + "2" * 64}


def _upgrade(engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _device(connection, device_id, name, *, labels, agent_labels, facts, revoked=None, key=None):
    connection.execute(
        text(
            "INSERT INTO devices (id, name, labels, agent_labels, facts, claim_id, cert_serial,"
            " cert_not_after, enrolled_at, last_seen, revoked_at, reported, key_sha256) VALUES"
            " (:id, :name, :labels, :agent, :facts, 'c1', 'ab', :t, :t, :t, :revoked, NULL, :key)"
        ),
        {
            "id": device_id,
            "name": name,
            "labels": json.dumps(labels),
            "agent": json.dumps(agent_labels),
            "facts": json.dumps(facts),
            "t": T0,
            "revoked": revoked,
            "key": key,
        },
    )


def _desired(connection, device_id, revision, modules):
    connection.execute(
        text(
            "INSERT INTO desired_states (device_id, revision, document, updated_at,"
            " applied_revision, applied_ok, applied_error, seq)"
            " VALUES (:id, :rev, :doc, :t, NULL, true, NULL, 1)"
        ),
        {"id": device_id, "rev": revision, "doc": json.dumps({"modules": modules}), "t": T0},
    )


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_0008_moves_requested_labels_derives_platform_labels_and_keeps_rows(engine):
    _upgrade(engine, "0007")
    facts = {"agent_version": "1", "hostname": "h", "os": "Linux", "arch": "aarch64"}
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO claims (id, name, secret_hash, labels, max_uses, uses, created_at,"
                " expires_at) VALUES ('c1', NULL, 'x', '{}', 5, 3, :t, :t)"
            ),
            {"t": T0},
        )
        _device(
            connection,
            "d1",
            "gold-wannabe",
            labels={"site": "berlin", "zone": None},  # a tombstone hiding an agent label
            agent_labels={"tier": "gold", "zone": "z9"},
            facts=facts,
        )
        _device(
            connection,
            "d2",
            "revoked-one",
            labels={},
            agent_labels={},
            facts=facts,
            revoked=T0,
            key="k" * 64,
        )
        _desired(connection, "d1", "rev-2", [MODULE_V2])
        connection.execute(
            text(
                "INSERT INTO rollouts (id, deployments, state, policy, wave_bounds, current_wave,"
                " accepted_failures, accepted_wave, previous_deployments, created_at, created_by,"
                " updated_at) VALUES ('r1', '[]', 'running', '{}', '[1]', 0, 0, -1, '{}', :t,"
                " 'test', :t)"
            ),
            {"t": T0},
        )
        connection.execute(
            text(
                "INSERT INTO rollout_devices (rollout_id, device_id, wave, state, target_revision,"
                " target_document, previous_revision, previous_document) VALUES"
                " ('r1', 'd1', 0, 'updating', 'rev-2', :target, 'rev-1', :previous)"
            ),
            {
                "target": json.dumps({"modules": [MODULE_V2]}),
                "previous": json.dumps({"modules": [MODULE_V1]}),
            },
        )

    upgrade_schema(engine)  # 0008 and anything after it

    with make_session_factory(engine)() as session:
        device = session.get(DeviceRow, "d1")
        assert device.reported_labels == {"tier": "gold", "zone": "z9"}
        assert device.labels == {"site": "berlin"}  # the tombstone is gone with agent labels
        assert device.platform_labels == {"fogline.dev/os": "linux", "fogline.dev/arch": "arm64"}
        assert effective_labels(device) == {"site": "berlin", **device.platform_labels}
        revoked = session.get(RevokedKeyRow, "k" * 64)
        assert (revoked.device_id, revoked.device_name) == ("d2", "revoked-one")
        desired = session.get(DesiredStateRow, "d1")  # the devices table kept its children
        assert desired.revision == "rev-2"
        assert desired.previous_releases == [MODULE_V1]  # mid-rollout: the other document
        assert session.get(ClaimRow, "c1").names == []
