"""Sensor passwords in Mosquitto's password-file format (PBKDF2-SHA512).

    $7$ITERATIONS$BASE64(12-byte salt)$BASE64(64-byte PBKDF2-HMAC-SHA512)

is what `mosquitto_passwd` writes and Mosquitto 2 verifies. Computing it
here means a node needs no `mosquitto_passwd` binary, and an operator can
produce the `passwordHash` of a manifest with `fogline sensors hash-password`.
"""

import base64
import hashlib
import hmac
import os
from typing import Final

from fogline.protocol import password_hash_problem

# Mosquitto's PBKDF2 parameters (mosquitto_passwd: 12-byte salt, 64-byte hash).
SALT_BYTES: Final = 12
HASH_BYTES: Final = 64
# mosquitto_passwd's default is 101; sensors connect rarely, so pay more per
# CONNECT for a hash that resists guessing should the file leak.
DEFAULT_ITERATIONS: Final = 10_000


def hash_sensor_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """The Mosquitto `$7$` hash of `password`, with a fresh random salt.

    Raises:
        ValueError: an empty password, or iterations out of bounds.
    """
    if not password:
        raise ValueError("the password is empty")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    text = f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    problem = password_hash_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def sensor_password_matches(password: str, password_hash: str) -> bool:
    """Whether `password` is the one `password_hash` was made from (constant time)."""
    if password_hash_problem(password_hash):
        return False
    _, _, iterations, salt, digest = password_hash.split("$")
    expected = base64.b64decode(digest)
    actual = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations), HASH_BYTES
    )
    return hmac.compare_digest(actual, expected)
