"""Release keys: 0600 files that are never overwritten, ids, public key forms."""

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.artifact import (
    ReleaseKeyError,
    generate_release_key,
    key_id,
    load_private_key,
    load_public_key,
    public_key_base64,
    public_key_pem,
)


def test_private_key_file_is_owner_only_and_loads_back(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        pair = generate_release_key()
        pair.write_private_key(tmp_path / "release.key")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "release.key").stat().st_mode) == 0o600
    assert load_private_key(tmp_path / "release.key").key_id == pair.key_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.key"]  # no temp left


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "release.key"
    first = generate_release_key()
    first.write_private_key(path)
    before = path.read_bytes()
    with pytest.raises(ReleaseKeyError, match="refusing to overwrite"):
        generate_release_key().write_private_key(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.key"]


def test_a_dangling_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "release.key").symlink_to(tmp_path / "elsewhere.key")
    with pytest.raises(ReleaseKeyError, match="already exists"):
        generate_release_key().write_private_key(tmp_path / "release.key")
    assert not (tmp_path / "elsewhere.key").exists()


def test_password_protected_key(tmp_path: Path) -> None:
    pair = generate_release_key()
    pair.write_private_key(tmp_path / "k", password=b"s3cret")
    assert b"ENCRYPTED" in (tmp_path / "k").read_bytes()
    assert load_private_key(tmp_path / "k", password=b"s3cret").key_id == pair.key_id
    with pytest.raises(ReleaseKeyError):
        load_private_key(tmp_path / "k", password=b"wrong")
    with pytest.raises(ReleaseKeyError):
        load_private_key(tmp_path / "k")


def test_loading_bad_key_files_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReleaseKeyError, match="does not exist") as caught:
        load_private_key(tmp_path / "missing.key")
    assert caught.value.path == str(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("not a key")
    with pytest.raises(ReleaseKeyError, match="not a PEM private key"):
        load_private_key(tmp_path / "junk.key")
    (tmp_path / "big.key").write_bytes(b"x" * 100_000)
    with pytest.raises(ReleaseKeyError, match="larger than"):
        load_private_key(tmp_path / "big.key")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.key").write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ReleaseKeyError, match="not an Ed25519 key"):
        load_private_key(tmp_path / "ec.key")


def test_key_id_is_a_prefix_of_the_sha256_of_the_raw_key() -> None:
    public = generate_release_key().public_key
    raw = base64.b64decode(public_key_base64(public))
    assert len(raw) == 32
    assert key_id(public) == "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def test_public_key_round_trips_as_pem_and_base64() -> None:
    pair = generate_release_key()
    pem = public_key_pem(pair.public_key)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(load_public_key(pem)) == pair.key_id
    assert key_id(load_public_key(public_key_base64(pair.public_key) + "\n")) == pair.key_id


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not base64!", "neither PEM nor base64"),
        (base64.b64encode(b"x" * 31).decode(), "32 bytes"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a PEM public key"),
        ("A" * 2000, "longer than"),
    ],
)
def test_bad_public_keys_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ReleaseKeyError, match=reason):
        load_public_key(text)


def test_repr_shows_the_key_id_only() -> None:
    pair = generate_release_key()
    assert repr(pair) == f"ReleaseKeyPair(key_id={pair.key_id!r})"
