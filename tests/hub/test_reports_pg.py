"""The report writer's one-statement UPDATE on PostgreSQL stores what the
executemany of its per-report UPDATE stores, byte for byte."""

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from fogline.hub import make_engine, upgrade_schema
from fogline.hub._claims import create_claim
from fogline.hub._clock import utcnow
from fogline.hub._db import make_session_factory
from fogline.hub._devices import report_columns
from fogline.hub._enrollment import enroll_device
from fogline.hub._reports import _UPDATE_DEVICE
from fogline.hub._reports_pg import update_devices_pg
from fogline.protocol import ClaimCreate, EnrollRequest, Report
from fogline.security import CertificateAuthority, make_csr
from tests.support.device import FACTS

_COLUMNS = (
    "facts::text, reported::text, reported_labels::text, agent_version, last_seen,"
    " outbox_lost, outbox_lost_at, cert_serial, prev_cert_serial"
)


@pytest.fixture
def engine(postgres_url, tmp_path):
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


def _enroll(engine, tmp_path, names):
    sessions = make_session_factory(engine)
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    serials = {}
    with sessions() as session, session.begin():
        _row, token = create_claim(session, ClaimCreate(max_uses=len(names)))
        for name in names:
            key = ec.generate_private_key(ec.SECP256R1())
            request = EnrollRequest.model_validate(
                {"claim": token, "csr": make_csr(key, name).decode(), "name": name, "facts": FACTS}
            )
            row, _pem = enroll_device(session, ca, request)
            serials[name] = (row.id, row.cert_serial)
    return serials


def _row(device, cert, version, lost, lost_at, now):
    report = Report.model_validate(
        {
            "facts": {**FACTS, "agent_version": version, "hostname": 'h\u00e9 "q" \\ \u2603'},
            "labels": {"zone": "a-b", "rack": "7"},
            "outbox": {"depth": 3, "bytes": 10, "max_bytes": 100, "dropped_quota": lost},
            "modules": {"modules": {"app": {"state": "healthy", "version": version}}},
        }
    )
    return {
        "b_id": device,
        "b_cert": cert,
        "outbox_lost": lost,
        "outbox_lost_at": lost_at,
        **report_columns(report, now),
    }


def test_one_statement_stores_what_the_executemany_stores(engine, tmp_path):
    devices = _enroll(engine, tmp_path, ["a", "b", "a2", "b2"])
    with engine.begin() as connection:  # both renewed once: the old serial still accepted
        connection.execute(text("UPDATE devices SET prev_cert_serial = 'old'"))
    now = utcnow()
    later = now + dt.timedelta(microseconds=123457)

    def batch(a, b):
        (a_id, a_cert), (b_id, b_cert) = devices[a], devices[b]
        return [
            _row(a_id, "old", "1.0.0", 0, None, now),  # the renewed-from certificate
            _row(b_id, b_cert, "1.0.0", 2, now, now),
            _row(a_id, a_cert, "2.0.0", 5, later, later),  # the new one: ends "old"
            _row(a_id, "old", "3.0.0", 5, later, later),  # a late retry, written last
        ]

    with engine.begin() as connection:
        connection.execute(_UPDATE_DEVICE, batch("a2", "b2"))
        update_devices_pg(connection, batch("a", "b"))
    with engine.connect() as connection:

        def stored(name):
            query = text(f"SELECT {_COLUMNS} FROM devices WHERE id = :id")
            row = dict(connection.execute(query, {"id": devices[name][0]}).one()._mapping)
            del row["cert_serial"]  # each device has its own
            return row

        assert stored("a") == stored("a2")
        assert stored("b") == stored("b2")
        a = stored("a")
    assert '"agent_version": "3.0.0"' in a["facts"] and a["prev_cert_serial"] is None
    assert (a["outbox_lost"], a["outbox_lost_at"]) == (5, later.replace(tzinfo=None))


def test_an_empty_batch_writes_nothing(engine, tmp_path):
    with engine.begin() as connection:
        update_devices_pg(connection, [])


def test_a_batch_finds_its_devices_by_primary_key_not_by_scanning_the_fleet(engine):
    """Joined to json_to_recordset's rows alone, the planner hashed them
    against a scan of every device: per batch, growing with the fleet."""
    import json

    from fogline.hub._reports_pg import _statement

    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO devices (id, name, labels, reported_labels, platform_labels, facts,"
                " cert_serial, cert_not_after, enrolled_at, health, outbox_lost)"
                " SELECT 'id' || g, 'n' || g, '{}', '{}', '{}', '{}', 's' || g, now(), now(),"
                " 'ok', 0 FROM generate_series(1, 3000) g"
            )
        )
        connection.execute(text("ANALYZE devices"))
    now = utcnow()
    rows = [_row(f"id{i}", f"s{i}", "1.0.0", 0, None, now) for i in range(1, 21)]
    columns = tuple(key for key in rows[0] if key not in ("b_id", "b_cert"))
    statement = _statement(columns, engine.dialect)
    records = [{**row, "last_seen": now.replace(tzinfo=None).isoformat()} for row in rows]
    with engine.begin() as connection:
        plan = connection.execute(
            text("EXPLAIN " + statement.text),
            {"rows": json.dumps(records), "ids": json.dumps([r["b_id"] for r in rows])},
        ).scalars()
        plan_text = "\n".join(plan)
    assert "devices_pkey" in plan_text and "Seq Scan on devices" not in plan_text, plan_text


def test_rows_that_set_different_columns_are_refused_not_half_written(engine, tmp_path):
    devices = _enroll(engine, tmp_path, ["a", "b"])
    now = utcnow()
    rows = [_row(*devices[name], "9.0.0", 0, None, now) for name in ("a", "b")]
    del rows[1]["reported"]
    with pytest.raises(ValueError, match="same columns"), engine.begin() as connection:
        update_devices_pg(connection, rows)
