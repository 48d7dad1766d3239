"""Bearer and claim tokens: `<prefix>_<id>.<secret>`.

Only a SHA-256 of the secret is stored, so a copy of the database grants
nothing. The id part lets the hub find the row without scanning, and
comparison is constant-time.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

from ._errors import TokenError

_TOKEN_RE: Final = re.compile(r"^(fg[a-z])_([a-z0-9]{12})\.([A-Za-z0-9_-]{32,64})$")
ADMIN_PREFIX: Final = "fga"
CLAIM_PREFIX: Final = "fgc"
# A named user's API token (`fogline tokens create`).
USER_TOKEN_PREFIX: Final = "fgt"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True, slots=True)
class NewToken:
    token_id: str
    token: str  # shown to the user once, never stored
    secret_hash: str


@dataclass(frozen=True, slots=True)
class ParsedToken:
    prefix: str
    token_id: str
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(prefix: str) -> NewToken:
    token_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    secret = secrets.token_urlsafe(32)
    return NewToken(token_id, f"{prefix}_{token_id}.{secret}", hash_secret(secret))


def parse_token(token: str) -> ParsedToken:
    """Split a token into its parts.

    Raises:
        TokenError: the token does not have the Fogline shape.
    """
    match = _TOKEN_RE.match(token.strip()) if len(token) < 200 else None
    if match is None:
        raise TokenError("malformed token")
    return ParsedToken(match[1], match[2], match[3])


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)
