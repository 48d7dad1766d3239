"""Signing and verifying releases: round trip, tampering, replay, untrusted keys."""

import base64
import builtins
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fogline.artifact import (
    ReleaseKeyPair,
    SignatureEnvelope,
    UntrustedReleaseError,
    Version,
    build_release,
    generate_release_key,
    read_signature,
    sha256_file,
    sign_release,
    signature_path,
    signed_message,
    verify_release,
)

from ._support import EXAMPLE_SPEC, make_module


@pytest.fixture(scope="module")
def key() -> ReleaseKeyPair:
    return generate_release_key()


@pytest.fixture
def signed(tmp_path: Path, key: ReleaseKeyPair) -> tuple[Path, SignatureEnvelope]:
    archive = build_release(make_module(tmp_path / "mod"), tmp_path / "r.tar.zst").path
    return archive, sign_release(archive, key)


def _trusted(*pairs: ReleaseKeyPair) -> dict[str, Ed25519PublicKey]:
    return {pair.key_id: pair.public_key for pair in pairs}


def test_sign_writes_the_envelope_next_to_the_archive_and_it_verifies(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair
) -> None:
    archive, envelope = signed
    sig_file = archive.with_name("r.tar.zst.sig")
    assert signature_path(archive) == sig_file
    stored = json.loads(sig_file.read_text())
    assert set(stored) == {"keyid", "name", "version", "digest", "signature"}
    assert stored["keyid"] == key.key_id
    assert (stored["name"], stored["version"]) == ("thermo-filter", "1.2.0")
    assert stored["digest"] == sha256_file(archive)
    assert read_signature(sig_file) == envelope

    verified = verify_release(sha256_file(archive), read_signature(sig_file), _trusted(key))
    assert (verified.name, verified.version, verified.keyid) == (
        "thermo-filter",
        Version(1, 2, 0),
        key.key_id,
    )
    assert verified.digest == sha256_file(archive)


def test_verify_accepts_the_raw_envelope_bytes(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair
) -> None:
    archive, _ = signed
    raw = signature_path(archive).read_bytes()
    assert verify_release(sha256_file(archive), raw, _trusted(key)).name == "thermo-filter"


def test_verify_does_no_io(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, envelope = signed
    digest = sha256_file(archive)

    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("verify_release touched the file system")

    monkeypatch.setattr(builtins, "open", no_io)
    monkeypatch.setattr(Path, "open", no_io)
    assert verify_release(digest, envelope, _trusted(key)).digest == digest


def test_a_flipped_byte_is_a_digest_mismatch(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair
) -> None:
    archive, envelope = signed
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(UntrustedReleaseError, match="digest mismatch"):
        verify_release(sha256_file(archive), envelope, _trusted(key))


def test_a_signature_by_an_unknown_key_is_refused(
    signed: tuple[Path, SignatureEnvelope],
) -> None:
    archive, envelope = signed
    other = generate_release_key()
    with pytest.raises(UntrustedReleaseError, match="not a trusted key"):
        verify_release(sha256_file(archive), envelope, _trusted(other))


def test_an_attacker_claiming_a_trusted_key_id_fails_the_signature_check(
    tmp_path: Path, key: ReleaseKeyPair
) -> None:
    archive = build_release(make_module(tmp_path / "mod"), tmp_path / "r.tar.zst").path
    forged = sign_release(archive, generate_release_key()).model_copy(update={"keyid": key.key_id})
    with pytest.raises(UntrustedReleaseError, match="bad signature"):
        verify_release(sha256_file(archive), forged, _trusted(key))


@pytest.mark.parametrize(
    "update",
    [
        {"version": Version(1, 3, 0)},
        {"version": Version(1, 2, 0, build=("x",))},
        {"name": "other-module"},
    ],
)
def test_a_signature_cannot_be_replayed_onto_another_name_or_version(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair, update: dict[str, object]
) -> None:
    archive, envelope = signed
    replayed = SignatureEnvelope.model_validate({**envelope.model_dump(), **update})
    with pytest.raises(UntrustedReleaseError, match="bad signature"):
        verify_release(sha256_file(archive), replayed, _trusted(key))


def test_an_older_validly_signed_release_is_refused_when_another_is_expected(
    tmp_path: Path, key: ReleaseKeyPair
) -> None:
    src = make_module(tmp_path / "mod", spec=EXAMPLE_SPEC.replace("1.2.0", "1.1.0"))
    archive = build_release(src, tmp_path / "old.tar.zst").path
    envelope = sign_release(archive, key)
    digest = sha256_file(archive)
    assert verify_release(digest, envelope, _trusted(key), expect_version="1.1.0")
    with pytest.raises(UntrustedReleaseError, match=r"expected 1\.2\.0"):
        verify_release(digest, envelope, _trusted(key), expect_version=Version(1, 2, 0))
    with pytest.raises(UntrustedReleaseError, match="expected 'other'"):
        verify_release(digest, envelope, _trusted(key), expect_name="other")


def test_the_signed_message_is_domain_separated_canonical_json() -> None:
    message = signed_message("m", Version(1, 0, 0), "sha256:" + "ab" * 32)
    assert message == (
        b'fogline-release-v1\n{"digest":"sha256:' + b"ab" * 32 + b'","name":"m","version":"1.0.0"}'
    )


def test_a_signature_over_the_bare_json_is_refused(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair
) -> None:
    # Someone tricked into signing the JSON alone (another message kind) must
    # not have produced a release signature.
    archive, envelope = signed
    bare = signed_message(envelope.name, envelope.version, envelope.digest).split(b"\n", 1)[1]
    crafted = envelope.model_copy(
        update={"signature": base64.b64encode(key.private_key.sign(bare)).decode()}
    )
    with pytest.raises(UntrustedReleaseError, match="bad signature"):
        verify_release(sha256_file(archive), crafted, _trusted(key))


def test_a_trust_map_entry_under_the_wrong_id_is_refused(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair
) -> None:
    archive, envelope = signed
    wrong = {key.key_id: generate_release_key().public_key}
    with pytest.raises(UntrustedReleaseError, match="another id"):
        verify_release(sha256_file(archive), envelope, wrong)


def _envelope_json(envelope: SignatureEnvelope, **changes: object) -> bytes:
    document = {**json.loads(envelope.to_json()), **changes}
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {"signature": None},
        {"extra": "field"},
        {"signature": "!" * 88},
        {"signature": base64.b64encode(b"x" * 63).decode()},
        {"keyid": "rsa:0123456789abcdef"},
        {"digest": "md5:abc"},
        {"version": "1.2"},
        {"name": "Not A Name"},
        {"version": 1},
    ],
)
def test_malformed_envelopes_are_untrusted(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair, changes: dict[str, object]
) -> None:
    archive, envelope = signed
    with pytest.raises(UntrustedReleaseError, match="malformed signature envelope"):
        verify_release(sha256_file(archive), _envelope_json(envelope, **changes), _trusted(key))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"{" + b" " * 5000 + b"}"])
def test_envelopes_that_are_not_json_objects_are_untrusted(raw: bytes, key: ReleaseKeyPair) -> None:
    with pytest.raises(UntrustedReleaseError, match="malformed signature envelope"):
        verify_release("sha256:" + "0" * 64, raw, _trusted(key))


def test_a_malformed_digest_argument_is_refused(
    signed: tuple[Path, SignatureEnvelope], key: ReleaseKeyPair
) -> None:
    _, envelope = signed
    with pytest.raises(UntrustedReleaseError, match="not sha256"):
        verify_release("SHA256:" + "0" * 64, envelope, _trusted(key))
