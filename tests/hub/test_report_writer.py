"""Batched report writing against SQLite and a real PostgreSQL (db_url fixture).

Many devices reporting at once share a transaction; each is still
authenticated on its own, and one bad report fails only itself.
"""

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.hub import make_engine, upgrade_schema
from fogline.hub._claims import create_claim
from fogline.hub._clock import utcnow
from fogline.hub._db import make_session_factory
from fogline.hub._desired import bump_generation
from fogline.hub._devices import find_device, revoke_device
from fogline.hub._enrollment import enroll_device
from fogline.hub._errors import ForbiddenError
from fogline.hub._reports import ReportWriter
from fogline.hub._schema import DeploymentRow, DesiredStateRow
from fogline.protocol import ClaimCreate, EnrollRequest, Report
from fogline.security import CertificateAuthority, make_csr
from tests.support.device import FACTS

DEVICES = 40


@pytest.fixture
def fleet(db_url, tmp_path):
    """(session factory, {name: (device id, cert serial)}) for DEVICES enrolled devices."""
    engine = make_engine(db_url)
    upgrade_schema(engine)
    sessions = make_session_factory(engine)
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    devices = {}
    with sessions() as session, session.begin():
        _row, token = create_claim(session, ClaimCreate(max_uses=DEVICES))
        for i in range(DEVICES):
            key = ec.generate_private_key(ec.SECP256R1())
            name = f"n{i}"
            request = EnrollRequest.model_validate(
                {"claim": token, "csr": make_csr(key, name).decode(), "name": name, "facts": FACTS}
            )
            row, _pem = enroll_device(session, ca, request)
            devices[name] = (row.id, row.cert_serial)
    yield sessions, devices
    engine.dispose()


def _report(version: str, hostname: str = "test-host", labels: dict | None = None) -> Report:
    return Report.model_validate(
        {
            "facts": {**FACTS, "agent_version": version, "hostname": hostname},
            "labels": labels or {},
            "outbox": None,
            "modules": {"modules": {"app": {"state": "healthy", "version": version}}},
        }
    )


async def _report_all(writer: ReportWriter, reports: dict[str, tuple[str, str, Report]]):
    runner = asyncio.create_task(writer.run())
    await asyncio.sleep(0)  # the writer is running: reports queue for it
    try:
        results = await asyncio.gather(
            *(writer.record(*args) for args in reports.values()), return_exceptions=True
        )
    finally:
        runner.cancel()
    return dict(zip(reports, results, strict=True))


def test_concurrent_reports_share_transactions_and_each_is_authenticated(fleet):
    sessions, devices = fleet
    with sessions() as session, session.begin():
        revoke_device(session, find_device(session, "n1"))
        seen_before = {name: find_device(session, name).last_seen for name in devices}
    batches: list[int] = []
    writer = ReportWriter(sessions, max_batch=16, observe_batch=batches.append)
    reports = {
        name: (dev_id, serial, _report("2.0.0")) for name, (dev_id, serial) in devices.items()
    }
    dev_id, _serial = devices["n2"]
    reports["n2"] = (dev_id, "bad0", _report("2.0.0"))  # an old certificate's serial
    reports["ghost"] = ("no-such-device", "abc", _report("2.0.0"))

    outcomes = asyncio.run(_report_all(writer, reports))

    assert sum(batches) == len(reports) and max(batches) > 1 and max(batches) <= 16
    assert isinstance(outcomes["n1"], ForbiddenError) and "revoked" in str(outcomes["n1"])
    assert isinstance(outcomes["n2"], ForbiddenError) and "superseded" in str(outcomes["n2"])
    assert isinstance(outcomes["ghost"], ForbiddenError)
    refused = {"n1", "n2", "ghost"}
    assert all(outcomes[name] is None for name in reports if name not in refused)
    with sessions() as session:
        for name in devices:
            row = find_device(session, name)
            written = name not in refused
            assert (row.facts["agent_version"] == "2.0.0") is written, name
            assert (row.last_seen != seen_before[name]) is written, name
            stored = {"modules": {"modules": {"app": {"state": "healthy", "version": "2.0.0"}}}}
            assert (row.reported == stored) is written, name


def test_one_failing_report_fails_alone(fleet, monkeypatch):
    sessions, devices = fleet
    import fogline.hub._reports as reports_module

    real_columns = reports_module.report_columns

    def columns_or_fail(report, now):
        if report.facts.hostname == "poison":
            raise RuntimeError("injected failure")
        return real_columns(report, now)

    monkeypatch.setattr(reports_module, "report_columns", columns_or_fail)
    writer = ReportWriter(sessions)
    reports = {
        name: (dev_id, serial, _report("3.0.0")) for name, (dev_id, serial) in devices.items()
    }
    reports["n3"] = (*devices["n3"], _report("3.0.0", hostname="poison"))

    outcomes = asyncio.run(_report_all(writer, reports))

    assert isinstance(outcomes["n3"], RuntimeError)
    assert all(outcomes[name] is None for name in devices if name != "n3")
    with sessions() as session:
        assert find_device(session, "n3").facts["agent_version"] != "3.0.0"
        assert find_device(session, "n4").facts["agent_version"] == "3.0.0"


def test_a_report_never_changes_what_selects_the_device(fleet):
    """Labels a report asks for are stored as requested labels and facts are
    refreshed, but neither moves what deployments select on: nothing is
    compiled, even for a deployment that selects exactly what was asked."""
    sessions, devices = fleet
    with sessions() as session, session.begin():
        session.add(
            DeploymentRow(
                name="gold",
                document={
                    "apiVersion": "fogline.dev/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "gold"},
                    "spec": {"selector": {"matchLabels": {"tier": "gold"}}, "config": {"x": 1}},
                },
                priority=0,
                applied_at=utcnow(),
                applied_by="test",
            )
        )
        bump_generation(session)
        platform_before = find_device(session, "n6").platform_labels
    writer = ReportWriter(sessions)
    moved = Report.model_validate(
        {"facts": {**FACTS, "arch": "riscv64"}, "labels": {"tier": "gold"}, "outbox": None}
    )
    reports = {"n6": (*devices["n6"], moved), "n7": (*devices["n7"], _report("5.0.0"))}

    outcomes = asyncio.run(_report_all(writer, reports))

    assert outcomes == {"n6": None, "n7": None}
    with sessions() as session:
        device = find_device(session, "n6")
        assert device.reported_labels == {"tier": "gold"} and device.facts["arch"] == "riscv64"
        assert device.platform_labels == platform_before  # taken at enrollment, kept
        assert "tier" not in device.labels
        assert session.get(DesiredStateRow, devices["n6"][0]) is None  # nothing compiled
        assert find_device(session, "n7").facts["agent_version"] == "5.0.0"


def test_reports_queued_when_the_writer_stops_are_refused_not_lost_silently(fleet):
    sessions, devices = fleet
    writer = ReportWriter(sessions)
    dev_id, serial = devices["n5"]

    async def scenario():
        runner = asyncio.create_task(writer.run())
        await asyncio.sleep(0)
        runner.cancel()  # stops before it takes the queued report
        pending = asyncio.create_task(writer.record(dev_id, serial, _report("4.0.0")))
        await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await runner
        return await asyncio.gather(pending, return_exceptions=True)

    (outcome,) = asyncio.run(scenario())
    # Either written before the writer stopped, or answered 503 -- never left hanging.
    if outcome is None:
        with sessions() as session:
            assert find_device(session, "n5").facts["agent_version"] == "4.0.0"
    else:
        assert getattr(outcome, "status", None) == 503


def test_a_device_twice_in_one_batch_is_recorded_in_order(fleet):
    sessions, devices = fleet
    batches: list[int] = []
    writer = ReportWriter(sessions, observe_batch=batches.append)
    reports = {
        "first": (*devices["n8"], _report("6.0.0")),
        "retry": (*devices["n8"], _report("6.0.1")),
        "other": (*devices["n9"], _report("6.0.0")),
    }

    outcomes = asyncio.run(_report_all(writer, reports))

    assert outcomes == {"first": None, "retry": None, "other": None}
    assert batches == [3]  # one transaction for all three
    with sessions() as session:
        assert find_device(session, "n8").facts["agent_version"] == "6.0.1"
        assert find_device(session, "n9").facts["agent_version"] == "6.0.0"


def test_reports_arriving_within_the_linger_share_one_transaction(fleet):
    sessions, devices = fleet
    batches: list[int] = []
    writer = ReportWriter(sessions, linger_s=0.2, observe_batch=batches.append)
    names = ["n10", "n11", "n12"]

    async def scenario():
        runner = asyncio.create_task(writer.run())
        await asyncio.sleep(0)
        try:
            pending = []
            for name in names:  # one at a time, as a paced fleet's reports arrive
                pending.append(asyncio.create_task(writer.record(*devices[name], _report("7.0.0"))))
                await asyncio.sleep(0.02)
            return await asyncio.gather(*pending)
        finally:
            runner.cancel()

    assert asyncio.run(scenario()) == [None, None, None]
    assert batches == [3]
    with sessions() as session:
        assert all(find_device(session, n).facts["agent_version"] == "7.0.0" for n in names)


def test_a_renewal_committed_during_a_batch_keeps_the_certificate_it_renewed_from(fleet, tmp_path):
    """The batch reads a device's row, the device's renewal commits (a new
    certificate; the presented one kept as the previous), then the batch
    writes. The report with the old certificate must not end it: the node
    may never have received the new one (it crashed, the answer was lost),
    and would be locked out with 403 'superseded' on every call (seen in CI:
    test_agent_killed_during_renewal_still_connects_and_renews)."""
    import datetime as dt

    from sqlalchemy import event as sa_event

    from fogline.hub._renewal import renew_device

    sessions, _devices = fleet
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")  # the fleet's CA
    with sessions() as session, session.begin():
        _claim, token = create_claim(session, ClaimCreate(max_uses=1))
        key = ec.generate_private_key(ec.SECP256R1())
        request = EnrollRequest.model_validate(
            {
                "claim": token,
                "csr": make_csr(key, "racer").decode(),
                "name": "racer",
                "facts": FACTS,
            }
        )
        row, cert_pem = enroll_device(session, ca, request)
        dev_id, old_serial = row.id, row.cert_serial
    started: list[bool] = []
    renewed: list[str] = []

    def renew_in_between(conn, cursor, statement, parameters, context, executemany):
        if started or not statement.lstrip().upper().startswith("UPDATE DEVICES"):
            return
        started.append(True)  # the renewal's own UPDATE passes through
        # Another request, on another connection, renews and commits now.
        new_key = ec.generate_private_key(ec.SECP256R1())
        with sessions() as other, other.begin():
            row, _pem, _replayed = renew_device(
                other, ca, dev_id, old_serial, cert_pem.decode(),
                make_csr(new_key, "racer").decode(), dt.timedelta(days=1),
            )  # fmt: skip
            renewed.append(row.cert_serial)

    engine = sessions.kw["bind"]
    sa_event.listen(engine, "before_cursor_execute", renew_in_between)
    try:
        writer = ReportWriter(sessions)
        outcomes = asyncio.run(
            _report_all(writer, {"racer": (dev_id, old_serial, _report("4.0.0"))})
        )
    finally:
        sa_event.remove(engine, "before_cursor_execute", renew_in_between)
    assert outcomes["racer"] is None and renewed
    with sessions() as session:
        row = find_device(session, "racer")
    assert row.facts["agent_version"] == "4.0.0"  # the report was written
    assert (row.cert_serial, row.prev_cert_serial) == (renewed[0], old_serial)
