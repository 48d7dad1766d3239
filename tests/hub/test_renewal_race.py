"""Two renewals of one device served at once, on SQLite and a real PostgreSQL.

A node renews one request at a time, but a retry after a timeout can reach
the hub while its first request is still being served. Whichever writes
second must not overwrite the first: the node may hold the first answer,
and would then be refused as superseded on every call.
"""

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import event

from fogline.hub import make_engine, upgrade_schema
from fogline.hub._claims import create_claim
from fogline.hub._db import make_session_factory
from fogline.hub._devices import device_refusal, find_device
from fogline.hub._enrollment import enroll_device
from fogline.hub._errors import ConflictError, ForbiddenError
from fogline.hub._renewal import renew_device
from fogline.hub._schema import DeviceRow
from fogline.protocol import ClaimCreate, EnrollRequest
from fogline.security import CertificateAuthority, make_csr
from tests.support.device import FACTS

VALIDITY = dt.timedelta(days=1)


@pytest.fixture
def enrolled(db_url, tmp_path):
    """(sessions, ca, device id, serial, certificate PEM) of one enrolled device."""
    engine = make_engine(db_url)
    upgrade_schema(engine)
    sessions = make_session_factory(engine)
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    with sessions() as session, session.begin():
        _claim, token = create_claim(session, ClaimCreate(max_uses=1))
        key = ec.generate_private_key(ec.SECP256R1())
        request = EnrollRequest.model_validate(
            {"claim": token, "csr": make_csr(key, "node").decode(), "name": "node", "facts": FACTS}
        )
        row, pem = enroll_device(session, ca, request)
        device = (row.id, row.cert_serial, pem.decode())
    yield sessions, ca, *device
    engine.dispose()


def _csr() -> str:
    return make_csr(ec.generate_private_key(ec.SECP256R1()), "node").decode()


def test_renewals_interleaved_at_the_write_leave_one_winner(enrolled):
    """Renewal 1 has read the row (as the route does) and, on SQLite, issued
    its certificate; just before its write, renewal 2 (another connection)
    is served and committed. SQLite locks nothing on a read: renewal 1 must
    be refused with 409 (before the fix it overwrote renewal 2, whose node
    was then superseded). On PostgreSQL renewal 2 runs just before renewal
    1's locking read, which must see renewal 2's row and not the one the
    session loaded first (before the fix's populate_existing, a 409 with the
    fix's check)."""
    sessions, ca, dev_id, serial, pem = enrolled
    engine = sessions.kw["bind"]
    on_postgres = engine.dialect.name == "postgresql"
    trigger = "SELECT" if on_postgres else "UPDATE DEVICES"
    started: list[bool] = []
    second: list[str] = []

    def renew_in_between(conn, cursor, statement, parameters, context, executemany):
        if started or not statement.lstrip().upper().startswith(trigger):
            return
        started.append(True)  # its own statements pass through
        with sessions() as other, other.begin():
            row, _pem, _replayed = renew_device(other, ca, dev_id, serial, pem, _csr(), VALIDITY)
            second.append(row.cert_serial)

    first: list[str] = []
    refused: list[ConflictError] = []
    try:
        with sessions() as session, session.begin():
            # The route's read before renew_device, kept alive as the route
            # keeps it (the session's identity map holds it weakly).
            known = session.get(DeviceRow, dev_id)
            # Listening until the commit: the old code wrote at the flush.
            event.listen(engine, "before_cursor_execute", renew_in_between)
            try:
                row, _pem, _replayed = renew_device(
                    session, ca, dev_id, serial, pem, _csr(), VALIDITY
                )
                first.append(row.cert_serial)
            except ConflictError as exc:
                refused.append(exc)
            assert known is not None
    finally:
        if event.contains(engine, "before_cursor_execute", renew_in_between):
            event.remove(engine, "before_cursor_execute", renew_in_between)
    assert second, "the interleaved renewal did not run"
    with sessions() as session:
        row = find_device(session, "node")
    if on_postgres:
        # Served one after the other: the second renewal (run first) is
        # superseded by the first, which renewed from the certificate the
        # device still accepts (the previous one).
        assert not refused and first
        assert (row.cert_serial, row.prev_cert_serial) == (first[0], serial)
    else:
        assert refused and not first
        assert refused[0].status == 409
        assert (row.cert_serial, row.prev_cert_serial) == (second[0], serial)
    # The certificate the device was last answered with works.
    assert device_refusal(row, row.cert_serial) is None


def test_a_retry_from_the_original_certificate_renews(enrolled):
    """A node whose first answer was lost retries with the certificate it
    still has (kept as the previous one): the check on the write lets it."""
    sessions, ca, dev_id, serial, pem = enrolled
    with sessions() as a, a.begin():
        renew_device(a, ca, dev_id, serial, pem, _csr(), VALIDITY)
    with sessions() as b, b.begin():
        row, _pem, _replayed = renew_device(b, ca, dev_id, serial, pem, _csr(), VALIDITY)
        retried = row.cert_serial
    with sessions() as session:
        row = find_device(session, "node")
    assert (row.cert_serial, row.prev_cert_serial) == (retried, serial)


def test_a_late_first_request_gets_the_certificate_its_retry_was_issued(enrolled):
    """The node's first request is served only after its retry was (same
    key, from the same certificate): it gets the retry's certificate again,
    and nothing is written. Before, it was issued a third certificate that
    superseded the one the node held from the retry's answer."""
    sessions, ca, dev_id, serial, pem = enrolled
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(key, "node").decode()
    with sessions() as a, a.begin():
        retry = renew_device(a, ca, dev_id, serial, pem, csr, VALIDITY)
        issued_serial = retry.row.cert_serial
    with sessions() as b, b.begin():
        late = renew_device(b, ca, dev_id, serial, pem, csr, VALIDITY)
    assert not retry.replayed and late.replayed
    assert late.cert_pem == retry.cert_pem
    with sessions() as session:
        row = find_device(session, "node")
    assert (row.cert_serial, row.prev_cert_serial) == (issued_serial, serial)
    # Whichever answer the node holds, it is accepted.
    assert device_refusal(row, issued_serial) is None
    assert device_refusal(row, serial) is None


def test_after_a_ca_rotation_a_repeated_renewal_is_issued_by_the_new_ca(enrolled, tmp_path):
    """A renewal asked again once the hub issues from another CA is a new
    one: the node is to move to the new CA, not keep the old one's."""
    sessions, ca, dev_id, serial, pem = enrolled
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), "node").decode()
    with sessions() as a, a.begin():
        first = renew_device(a, ca, dev_id, serial, pem, csr, VALIDITY)
    rotated = CertificateAuthority.load_or_create(tmp_path / "ca-next")
    with sessions() as b, b.begin():
        again = renew_device(b, rotated, dev_id, serial, pem, csr, VALIDITY)
    assert not again.replayed and again.cert_pem != first.cert_pem
    with sessions() as session:
        row = find_device(session, "node")
    assert (row.cert_ca_key_id, row.prev_cert_serial) == (rotated.key_id, serial)


def test_once_the_device_showed_the_new_certificate_a_repeat_is_refused(enrolled):
    """The previous certificate is dropped when the device presents its new
    one (the report writer's job); after that the old certificate cannot
    renew, replay or not."""
    sessions, ca, dev_id, serial, pem = enrolled
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), "node").decode()
    with sessions() as a, a.begin():
        renew_device(a, ca, dev_id, serial, pem, csr, VALIDITY)
        row = a.get(DeviceRow, dev_id)
        assert row is not None
        row.prev_cert_serial = None  # what a report with the new certificate writes
    with sessions() as b, b.begin(), pytest.raises(ForbiddenError, match="superseded"):
        renew_device(b, ca, dev_id, serial, pem, csr, VALIDITY)
