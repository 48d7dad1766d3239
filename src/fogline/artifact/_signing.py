"""Release signatures: what is signed, the `.sig` envelope, and pure verification.

The signed message is a domain-separation prefix followed by canonical JSON
of exactly {digest, name, version}:

    b"fogline-release-v1\\n" + b'{"digest":"sha256:...","name":"thermo-filter","version":"1.2.0"}'

Binding name and version means a signature for `thermo-filter 1.2.0` cannot
be replayed to pass the same bytes off as another module or version; the
prefix means no other Fogline signature (tokens, CSRs...) can be mistaken
for a release signature, or the reverse.
"""

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from fogline._durable import write_atomic

from ._digest import DIGEST_RE, is_digest, sha256_file
from ._errors import UntrustedReleaseError
from ._keys import ReleaseKeyPair, key_id
from ._semver import Version
from ._spec import ModuleName
from ._unpack import read_module_spec_from_archive

SIGNATURE_DOMAIN: Final = b"fogline-release-v1\n"
SIGNATURE_SUFFIX: Final = ".sig"
# An envelope is ~250 bytes of JSON; anything much larger is not one.
MAX_ENVELOPE_BYTES: Final = 4096
_KEY_ID_RE: Final = r"^ed25519:[0-9a-f]{16}$"
# 64 signature bytes are exactly 86 base64 characters plus "==".
_SIGNATURE_RE: Final = r"^[A-Za-z0-9+/]{86}==$"


class SignatureEnvelope(BaseModel):
    """The `.sig` file next to an archive: who signed which name, version and digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keyid: Annotated[str, Strict(), Field(pattern=_KEY_ID_RE)]
    name: ModuleName
    version: Version
    digest: Annotated[str, Strict(), Field(pattern=f"^{DIGEST_RE.pattern}$")]
    signature: Annotated[str, Strict(), Field(pattern=_SIGNATURE_RE)]

    def to_json(self) -> bytes:
        """The envelope as it is stored: sorted keys, two-space indent, final newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> "SignatureEnvelope":
        """Parse a stored envelope.

        Raises:
            UntrustedReleaseError: too large, not JSON, or not an envelope.
        """
        if len(data) > MAX_ENVELOPE_BYTES:
            raise UntrustedReleaseError(
                f"malformed signature envelope: larger than {MAX_ENVELOPE_BYTES} bytes"
            )
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise UntrustedReleaseError(
                f"malformed signature envelope: {where}: {first['msg']}"
            ) from exc


@dataclass(frozen=True, slots=True)
class VerifiedRelease:
    """A release whose digest is signed by a trusted key for this name and version."""

    name: str
    version: Version
    digest: str
    keyid: str


def signed_message(name: str, version: Version | str, digest: str) -> bytes:
    """The exact bytes a release signature covers (see the module docstring)."""
    body = {"digest": digest, "name": name, "version": str(version)}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return SIGNATURE_DOMAIN + canonical.encode("ascii")


def signature_path(archive: Path) -> Path:
    """Where the envelope of `archive` lives: the archive's name plus `.sig`."""
    archive = Path(archive)
    return archive.with_name(archive.name + SIGNATURE_SUFFIX)


def sign_release(
    archive: Path, private_key: ReleaseKeyPair | Ed25519PrivateKey
) -> SignatureEnvelope:
    """Sign `archive` (name and version read from its module file) and write `archive.sig`.

    Raises:
        UnsafeArchiveError: the archive is not a readable release.
        ModuleSpecError: its module file is invalid.
        OSError: reading the archive or writing the envelope failed.
    """
    archive = Path(archive)
    pair = private_key if isinstance(private_key, ReleaseKeyPair) else ReleaseKeyPair(private_key)
    spec = read_module_spec_from_archive(archive)
    digest = sha256_file(archive)
    raw = pair.private_key.sign(signed_message(spec.name, spec.version, digest))
    envelope = SignatureEnvelope(
        keyid=pair.key_id,
        name=spec.name,
        version=spec.version,
        digest=digest,
        signature=base64.b64encode(raw).decode("ascii"),
    )
    write_atomic(signature_path(archive), envelope.to_json(), mode=0o644, make_parents=False)
    return envelope


def read_signature(path: Path) -> SignatureEnvelope:
    """Read an envelope file (at most MAX_ENVELOPE_BYTES).

    Raises:
        UntrustedReleaseError: the envelope is malformed.
        OSError: the file cannot be read.
    """
    with Path(path).open("rb") as fh:
        return SignatureEnvelope.from_json(fh.read(MAX_ENVELOPE_BYTES + 1))


def verify_release(
    digest: str,
    envelope: SignatureEnvelope | bytes | str,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    *,
    expect_name: str | None = None,
    expect_version: Version | str | None = None,
) -> VerifiedRelease:
    """Check that `digest` (of the bytes you hold) is signed by a trusted key.

    Pure: no I/O. `trusted_keys` maps key ids to the pinned public keys.
    Pass `expect_name`/`expect_version` (what the desired state asked for)
    so that a validly signed but different release, such as an older
    vulnerable version, is refused too.

    Raises:
        UntrustedReleaseError: malformed envelope, digest mismatch, unknown
            key id, bad signature, or not the expected name/version.
    """
    if not isinstance(envelope, SignatureEnvelope):
        envelope = SignatureEnvelope.from_json(envelope)
    if not is_digest(digest):
        raise UntrustedReleaseError(f"digest {digest[:80]!r} is not sha256:<64 hex digits>")
    # The digest is of the bytes actually held; the envelope says what was signed.
    if not hmac.compare_digest(envelope.digest, digest):
        raise UntrustedReleaseError(
            f"digest mismatch: the archive is {digest}, the signature is for {envelope.digest}"
        )
    public_key = trusted_keys.get(envelope.keyid)
    if public_key is None:
        raise UntrustedReleaseError(f"signed by {envelope.keyid}, which is not a trusted key")
    if key_id(public_key) != envelope.keyid:
        # A mis-built trust map; refuse rather than check against the wrong key.
        raise UntrustedReleaseError(f"trusted key listed as {envelope.keyid} has another id")
    try:
        raw = base64.b64decode(envelope.signature, validate=True)
        public_key.verify(raw, signed_message(envelope.name, envelope.version, envelope.digest))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise UntrustedReleaseError(
            f"bad signature from {envelope.keyid} on {envelope.name} {envelope.version}"
        ) from exc
    if expect_name is not None and envelope.name != expect_name:
        raise UntrustedReleaseError(
            f"signed release is {envelope.name!r}, expected {expect_name!r}"
        )
    if expect_version is not None and str(envelope.version) != str(expect_version):
        raise UntrustedReleaseError(
            f"signed release is {envelope.name} {envelope.version}, expected {expect_version}"
        )
    return VerifiedRelease(envelope.name, envelope.version, envelope.digest, envelope.keyid)
