"""Console passwords: argon2id hashes, never the password.

argon2-cffi's defaults (RFC 9106's second recommended profile: 64 MiB, 3
passes) make each guess against a stolen database cost real memory and time.
The password's length is bounded before hashing: hashing is the expensive
part, and an unbounded input is a cheap way to make the hub do it.
"""

from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MAX_PASSWORD_CHARS: Final = 1024
MIN_PASSWORD_CHARS: Final = 8
_HASHER: Final = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, `$argon2id$...`) of `password`.

    Raises:
        ValueError: shorter than 8 or longer than 1024 characters.
    """
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValueError(
            f"a password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters "
            f"(got {len(password)})"
        )
    return _HASHER.hash(password)


def password_matches(password: str, password_hash: str) -> bool:
    """Whether `password` is the one hashed; a malformed hash matches nothing."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
