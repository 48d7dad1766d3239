import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fogline.security import (
    CertificateAuthority,
    CsrRejectedError,
    TokenError,
    check_csr,
    device_id_from_cert,
    generate_device_key,
    make_csr,
    new_token,
    parse_token,
    secret_matches,
)


def test_ca_is_created_once_with_a_private_key_file_of_mode_0600(tmp_path):
    ca = CertificateAuthority.load_or_create(tmp_path)
    mode = stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode)
    assert mode == 0o600
    again = CertificateAuthority.load_or_create(tmp_path)
    assert again.cert.serial_number == ca.cert.serial_number


def test_device_cert_subject_is_the_hubs_choice_not_the_csrs(tmp_path):
    ca = CertificateAuthority.load_or_create(tmp_path)
    checked = check_csr(make_csr(generate_device_key(), "i-am-someone-else").decode())
    issued = ca.issue_device_cert(checked.csr, "device-123")
    cert = x509.load_pem_x509_certificate(issued.pem)
    assert device_id_from_cert(cert) == "device-123"
    assert cert.issuer == ca.cert.subject
    assert issued.not_after > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)


def test_server_cert_names_cover_localhost_and_extra_sans(tmp_path):
    ca = CertificateAuthority.load_or_create(tmp_path)
    ca.issue_server_cert(
        tmp_path / "k.pem", tmp_path / "c.pem", ["localhost", "127.0.0.1", "hub.example"]
    )
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "hub.example"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_csr_with_weak_rsa_key_is_rejected():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CsrRejectedError, match="1024 bits"):
        check_csr(make_csr(weak, "node").decode())


def test_csr_on_a_small_curve_is_rejected():
    small = ec.generate_private_key(ec.SECP192R1())
    with pytest.raises(CsrRejectedError, match="secp192r1"):
        check_csr(make_csr(small, "node").decode())


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "x" * 9000,
    ],
)
def test_garbage_csr_is_rejected_cleanly(junk):
    with pytest.raises(CsrRejectedError):
        check_csr(junk)


def test_tokens_round_trip_and_only_the_hash_is_needed_to_check():
    token = new_token("fga")
    parsed = parse_token(token.token)
    assert parsed.token_id == token.token_id
    assert secret_matches(parsed.secret, token.secret_hash)
    assert not secret_matches(parsed.secret + "x", token.secret_hash)
    assert token.secret_hash not in token.token


@pytest.mark.parametrize("bad", ["", "fga_short.x", "nope", "fga_" + "a" * 300])
def test_malformed_tokens_are_refused(bad):
    with pytest.raises(TokenError):
        parse_token(bad)
