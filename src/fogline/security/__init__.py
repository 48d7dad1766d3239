"""Identity and trust: the fleet CA, device CSRs, tokens, key files, sealed files."""

from ._ca import CertificateAuthority, IssuedCert, device_id_from_cert, device_uri
from ._csr import CheckedCsr, check_csr, generate_device_key, make_csr, public_key_sha256
from ._errors import (
    CsrRejectedError,
    DamagedSealedFileError,
    SealedFileError,
    SecurityError,
    TokenError,
    TokenFileError,
    WrongPassphraseError,
)
from ._files import (
    load_private_key,
    private_key_pem,
    read_token_file,
    write_private_key,
    write_public_file,
    write_secret_file,
)
from ._sealed import ScryptCost, SealedReader, SealedWriter
from ._tokens import (
    ADMIN_PREFIX,
    CLAIM_PREFIX,
    NewToken,
    ParsedToken,
    hash_secret,
    new_token,
    parse_token,
    secret_matches,
)

__all__ = [
    "ADMIN_PREFIX",
    "CLAIM_PREFIX",
    "CertificateAuthority",
    "CheckedCsr",
    "CsrRejectedError",
    "DamagedSealedFileError",
    "IssuedCert",
    "NewToken",
    "ParsedToken",
    "ScryptCost",
    "SealedFileError",
    "SealedReader",
    "SealedWriter",
    "SecurityError",
    "TokenError",
    "TokenFileError",
    "WrongPassphraseError",
    "check_csr",
    "device_id_from_cert",
    "device_uri",
    "generate_device_key",
    "hash_secret",
    "load_private_key",
    "make_csr",
    "new_token",
    "parse_token",
    "private_key_pem",
    "public_key_sha256",
    "read_token_file",
    "secret_matches",
    "write_private_key",
    "write_public_file",
    "write_secret_file",
]
