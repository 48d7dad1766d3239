"""The storage layer against SQLite and a real PostgreSQL (see the db_url fixture)."""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.hub import make_engine, upgrade_schema
from fogline.hub._claims import create_claim, revoke_claim
from fogline.hub._clock import utcnow
from fogline.hub._db import make_session_factory
from fogline.hub._device_labels import effective_labels, normalize_arch, platform_labels
from fogline.hub._devices import change_labels, count_devices_by_status, find_device, revoke_device
from fogline.hub._enrollment import enroll_device
from fogline.hub._errors import BadRequestError, ConflictError, ForbiddenError, UnauthorizedError
from fogline.hub._people import authenticate
from fogline.hub._schema import ClaimRow
from fogline.hub._tokens import ensure_admin_token
from fogline.protocol import ClaimCreate, EnrollRequest, LabelChange
from fogline.security import CertificateAuthority, make_csr, parse_token
from tests.support.device import FACTS


@pytest.fixture
def sessions(db_url):
    engine = make_engine(db_url)
    upgrade_schema(engine)
    upgrade_schema(engine)  # a second start finds the schema current
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority.load_or_create(tmp_path / "ca")


def _request(claim: str, name: str, **extra) -> EnrollRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    return EnrollRequest.model_validate(
        {"claim": claim, "csr": make_csr(key, name).decode(), "name": name, "facts": FACTS, **extra}
    )


def _claim(sessions, **spec) -> str:
    with sessions() as session, session.begin():
        _row, token = create_claim(session, ClaimCreate(**spec))
    return token


def test_admin_token_is_created_once_and_authenticates(sessions):
    with sessions() as session, session.begin():
        token = ensure_admin_token(session, "fga")
    assert token is not None
    with sessions() as session, session.begin():
        assert ensure_admin_token(session, "fga") is None
    with sessions() as session:
        principal = authenticate(session, token.token, utcnow())
        assert (principal.name, principal.role, principal.scope) == ("admin", "admin", None)
        with pytest.raises(UnauthorizedError, match="invalid token"):
            authenticate(session, token.token[:-1] + "x", utcnow())


def test_enrollment_selects_on_claim_labels_and_keeps_the_device_request_apart(sessions, ca):
    token = _claim(sessions, labels={"site": "plant-7"}, max_uses=5)
    facts = {**FACTS, "os": "Linux", "arch": "aarch64"}
    with sessions() as session, session.begin():
        _row, pem = enroll_device(
            session, ca, _request(token, "n1", labels={"site": "x", "tier": "gold"}, facts=facts)
        )
    assert pem.startswith(b"-----BEGIN CERTIFICATE")
    with sessions() as session:
        device = find_device(session, "n1")
        labels = effective_labels(device)
        assert device.reported_labels == {"site": "x", "tier": "gold"}
    assert labels == {"site": "plant-7", "fogline.dev/os": "linux", "fogline.dev/arch": "arm64"}


def test_claim_max_uses_holds_under_concurrent_enrollments(sessions, ca):
    token = _claim(sessions, max_uses=3)

    def enroll(i: int) -> bool:
        try:
            with sessions() as session, session.begin():
                enroll_device(session, ca, _request(token, f"node-{i}"))
            return True
        except ForbiddenError:
            return False

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(enroll, range(8)))
    assert results.count(True) == 3


def test_revoked_and_expired_claims_are_refused(sessions, ca):
    revoked = _claim(sessions)
    with sessions() as session, session.begin():
        revoke_claim(session, parse_token(revoked).token_id)
    with sessions() as session, pytest.raises(ForbiddenError), session.begin():
        enroll_device(session, ca, _request(revoked, "a"))
    expired = _claim(sessions)
    with sessions() as session, session.begin():
        # Expired a second ago: a claim made to expire in a millisecond may
        # still be valid when a fast machine enrolls with it.
        row = session.get(ClaimRow, parse_token(expired).token_id)
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    with sessions() as session, pytest.raises(ForbiddenError), session.begin():
        enroll_device(session, ca, _request(expired, "b"))


def test_duplicate_names_conflict_and_foreign_cn_is_forbidden(sessions, ca):
    token = _claim(sessions, max_uses=5)
    with sessions() as session, session.begin():
        enroll_device(session, ca, _request(token, "dup"))
    with sessions() as session, pytest.raises(ConflictError), session.begin():
        enroll_device(session, ca, _request(token, "dup"))
    key = ec.generate_private_key(ec.SECP256R1())
    hijack = EnrollRequest.model_validate(
        {"claim": token, "csr": make_csr(key, "dup").decode(), "name": "other", "facts": FACTS}
    )
    with sessions() as session, pytest.raises(ForbiddenError, match="CN"), session.begin():
        enroll_device(session, ca, hijack)


def test_label_changes_promote_set_remove_and_counts_by_status(sessions, ca):
    token = _claim(sessions, labels={"zone": "z1"}, max_uses=5)
    with sessions() as session, session.begin():
        enroll_device(session, ca, _request(token, "a", labels={"rack": "r7", "tier": "x"}))
        enroll_device(session, ca, _request(token, "b"))
        enroll_device(session, ca, _request(token, "c"))
    with sessions() as session, session.begin():
        promoted = change_labels(
            find_device(session, "a"),
            LabelChange(set={"tier": "gold"}, remove=["zone"], promote=["rack", "tier"]),
        )
        assert promoted == {"rack": "r7", "tier": "x"}  # set wins over the promoted value
        with pytest.raises(BadRequestError, match="did not ask for label"):
            change_labels(find_device(session, "b"), LabelChange(promote=["rack"]))
        revoke_device(session, find_device(session, "b"))
        find_device(session, "c").last_seen = utcnow() - dt.timedelta(hours=1)
    with sessions() as session:
        labels = effective_labels(find_device(session, "a"))
        assert {k: v for k, v in labels.items() if "/" not in k} == {"rack": "r7", "tier": "gold"}
        counts = count_devices_by_status(session, utcnow(), 30)
    assert counts == {"online": 1, "offline": 1, "revoked": 1}


def test_an_enrollment_retried_with_the_same_key_gets_the_same_device(sessions, ca):
    token = _claim(sessions, max_uses=5)
    key = ec.generate_private_key(ec.SECP256R1())

    def request(claim: str, with_key) -> EnrollRequest:
        return EnrollRequest.model_validate(
            {
                "claim": claim,
                "csr": make_csr(with_key, "retry").decode(),
                "name": "retry",
                "facts": FACTS,
            }
        )

    with sessions() as session, session.begin():
        first, _ = enroll_device(session, ca, request(token, key))
        first_id, first_serial = first.id, first.cert_serial
    # the answer was lost: the node asks again with the same key and claim
    with sessions() as session, session.begin():
        again, pem = enroll_device(session, ca, request(token, key))
        assert again.id == first_id and again.cert_serial != first_serial
        assert pem.startswith(b"-----BEGIN CERTIFICATE")
    with sessions() as session:
        from fogline.hub._schema import ClaimRow

        assert session.get(ClaimRow, parse_token(token).token_id).uses == 1  # counted once
    # another key, or the same key with another claim, is someone else
    other = ec.generate_private_key(ec.SECP256R1())
    with sessions() as session, pytest.raises(ConflictError), session.begin():
        enroll_device(session, ca, request(token, other))
    with sessions() as session, pytest.raises(ConflictError), session.begin():
        enroll_device(session, ca, request(_claim(sessions), key))
    # the retry needs the claim still valid, even though it takes no use
    with sessions() as session, session.begin():
        revoke_claim(session, parse_token(token).token_id)
    with sessions() as session, pytest.raises(ForbiddenError, match="claim"), session.begin():
        enroll_device(session, ca, request(token, key))


@pytest.mark.parametrize(
    ("arch", "label"),
    [
        ("x86_64", "amd64"),
        ("AMD64", "amd64"),
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("armv7l", "arm"),
        ("armv6l", "arm"),
        ("i686", "386"),
        ("i386", "386"),
        ("riscv64", "riscv64"),
        ("PPC64LE", "ppc64le"),
    ],
)
def test_arch_is_named_as_go_and_kubernetes_name_it(arch, label):
    assert normalize_arch(arch) == label
    assert platform_labels({"os": "Linux", "arch": arch}) == {
        "fogline.dev/os": "linux",
        "fogline.dev/arch": label,
    }


def test_a_fact_that_makes_no_label_value_gives_no_label():
    assert platform_labels({"os": "linux", "arch": "x" * 80}) == {"fogline.dev/os": "linux"}
    assert platform_labels({"os": "li nux;", "arch": ""}) == {}
