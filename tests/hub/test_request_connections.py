"""A request's database session gives its connection back before the answer
leaves the handler.

FastAPI closes a request's session (`db_session`) only after the answer is
sent, and validates a plain-def route's answer on a worker thread first: a
connection still checked out when the handler returns waits for a free
worker thread, and then for the client. Under a burst of enrollments (a
1,000-node fleet, tests/sim/test_renewal.py) the worker threads were all
waiting for a connection while the connections waited for a worker thread:
the hub's 50 connections stayed taken until the pool's 30 s timeout, at
16 % of a core. So enrollment and renewal end their transaction before they
return, and token authentication (the operator's and the console's
dependencies) before the route's own worker thread: these tests count the
pool's checked-out connections at those points.
"""

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fogline.hub import HubState, create_app, make_engine, upgrade_schema
from fogline.hub._claims import create_claim
from fogline.hub._clock import utcnow
from fogline.hub._db import make_session_factory
from fogline.hub._people import authenticate
from fogline.hub._tls import PEER_SCOPE_KEY, PeerCertificate
from fogline.hub._tokens import ensure_admin_token
from fogline.protocol import ClaimCreate
from fogline.security import ADMIN_PREFIX, CertificateAuthority, device_id_from_cert, make_csr
from tests.support.device import enroll_body
from tests.support.processes import start_hub, tls


@dataclass
class PoolAtAnswer:
    """ASGI: the pool's checked-out connections as each answer starts, and a
    client certificate in the scope of requests that name one."""

    app: ASGIApp
    state: HubState
    peer: PeerCertificate | None = None
    seen: list[tuple[str, int, int]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.peer is not None:
            scope[PEER_SCOPE_KEY] = self.peer

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                checked_out = self.state.engine.pool.checkedout()  # type: ignore[attr-defined]
                self.seen.append((scope["path"], message["status"], checked_out))
            await send(message)

        await self.app(scope, receive, counting)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[HubState, PoolAtAnswer]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade_schema(engine)
    state = HubState(
        engine, make_session_factory(engine), CertificateAuthority.load_or_create(tmp_path)
    )
    try:
        yield state, PoolAtAnswer(create_app(state), state)
    finally:
        engine.dispose()


def _claim(state: HubState) -> str:
    with state.transaction() as session:
        _row, token = create_claim(session, ClaimCreate(max_uses=5))
    return token


def _run(app: PoolAtAnswer, method: str, path: str, **kwargs: object) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            return await client.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(call())


def test_enroll_and_renew_answer_with_no_connection_checked_out(
    hub: tuple[HubState, PoolAtAnswer],
) -> None:
    state, app = hub
    key = ec.generate_private_key(ec.SECP256R1())
    enrolled = _run(app, "POST", "/v1/enroll", json=enroll_body(_claim(state), "held-1", key))
    assert enrolled.status_code == 200, enrolled.text
    cert = x509.load_pem_x509_certificate(enrolled.json()["certificate"].encode())
    app.peer = PeerCertificate(
        pem=enrolled.json()["certificate"],
        device_id=device_id_from_cert(cert),
        serial_hex=format(cert.serial_number, "x"),
    )
    renewed = _run(app, "POST", "/v1/renew", json={"csr": make_csr(key, "held-1").decode()})
    assert renewed.status_code == 200, renewed.text
    assert app.seen == [("/v1/enroll", 200, 0), ("/v1/renew", 200, 0)]


def test_authenticating_a_token_gives_the_connection_back(
    hub: tuple[HubState, PoolAtAnswer],
) -> None:
    """The auth dependencies authenticate on one worker thread and the route
    runs on another: the session, still open, holds no connection between."""
    state, _app = hub
    with state.transaction() as session:
        token = ensure_admin_token(session, ADMIN_PREFIX)
    assert token is not None
    held = []
    with state.sessions() as session:
        # Twice: the first use of a token records it (a write); the second only reads.
        for _ in range(2):
            principal = authenticate(session, token.token, utcnow())
            held.append(state.engine.pool.checkedout())  # type: ignore[attr-defined]
    assert principal.role == "admin"
    assert held == [0, 0]


@pytest.mark.parametrize(
    "path",
    ["/v1/deployments", "/v1/alerts", "/v1/insights", "/v1/vulndb", "/v1/releasekeys"],
)
def test_operator_reads_answer_with_no_connection_checked_out(
    hub: tuple[HubState, PoolAtAnswer], path: str
) -> None:
    """Routes that take the request's session (`SessionDep`) give its
    connection back as they return, before their answer waits for a worker
    thread: a burst of operator reads could otherwise deadlock the pool as
    enrollments did."""
    state, app = hub
    with state.transaction() as session:
        token = ensure_admin_token(session, ADMIN_PREFIX)
    assert token is not None
    answer = _run(app, "GET", path, headers={"authorization": f"Bearer {token.token}"})
    assert answer.status_code == 200, answer.text
    assert app.seen == [(path, 200, 0)]


def test_an_enrollment_behind_a_held_write_lock_is_a_503_with_retry_after(tmp_path: Path) -> None:
    """SQLite's busy timeout (10 s) run out under a burst is a busy database,
    not a hub fault: 503 with Retry-After, and the node enrolls once the
    writer ahead of it is done (a 500 before)."""
    hub = start_hub(tmp_path / "hub")
    try:
        claim = hub.create_claim(max_uses=1)
        key = ec.generate_private_key(ec.SECP256R1())
        body = enroll_body(claim, "busy-1", key)
        blocker = sqlite3.connect(hub.data_dir / "hub.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # the write lock, as a long writer holds it
            busy = httpx.post(f"{hub.url}/v1/enroll", json=body, verify=tls(hub.ca), timeout=60)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert busy.status_code == 503, busy.text
        assert (busy.json()["error"], busy.headers["retry-after"]) == ("unavailable", "5")
        assert "busy" in busy.json()["message"]
        again = httpx.post(f"{hub.url}/v1/enroll", json=body, verify=tls(hub.ca), timeout=60)
        assert again.status_code == 200, again.text  # the claim's one use was not spent
    finally:
        hub.stop()


def test_a_request_that_finds_every_pooled_connection_taken_is_a_503_with_retry_after(
    tmp_path: Path,
) -> None:
    """10,000 simulated devices waking for one apply (long-polls, TUF
    metadata, reports) took every pooled connection for the pool's whole
    timeout, and the hub answered 500 (bench_rollout_scale): a busy hub, not
    a fault, so 503 with Retry-After, as for SQLite's busy timeout."""
    engine = create_engine(
        f"sqlite:///{tmp_path / 'hub.db'}",
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
        connect_args={"check_same_thread": False},
    )
    upgrade_schema(engine)
    state = HubState(
        engine, make_session_factory(engine), CertificateAuthority.load_or_create(tmp_path)
    )
    app = PoolAtAnswer(create_app(state), state)
    try:
        with state.transaction() as session:
            token = ensure_admin_token(session, ADMIN_PREFIX)
        assert token is not None
        headers = {"authorization": f"Bearer {token.token}"}
        held = engine.connect()  # the pool's only connection, taken
        try:
            busy = _run(app, "GET", "/v1/devices", headers=headers)
        finally:
            held.close()
        assert busy.status_code == 503, busy.text
        assert (busy.json()["error"], busy.headers["retry-after"]) == ("unavailable", "5")
        again = _run(app, "GET", "/v1/devices", headers=headers)
        assert again.status_code == 200, again.text
    finally:
        engine.dispose()
