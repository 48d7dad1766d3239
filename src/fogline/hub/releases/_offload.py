"""Artifact offload: the hub authorises a download, nginx serves the bytes.

With `fogline hub serve --artifact-offload https://HOST:PORT`, the artifact
routes answer a device they have authorised (client certificate, release in
its desired state, exactly as when the hub serves the bytes itself) with
`307 Temporary Redirect` to a short-lived URL signed for nginx's
`secure_link` module. nginx serves the artifact directory read-only (see
_nginx.py for its configuration), so the hub's memory no longer grows with
the number of downloads in flight.

The signature is nginx's documented `secure_link_md5` form, over the expiry,
the URI and a secret only the hub and nginx know (DATA_DIR/artifact-offload-
secret, 0600, made by the hub on first use):

    md5 = base64url(MD5("<expires><uri> <secret>")), unpadded
    URL = <offload>/<uri>?md5=<md5>&expires=<expires>

MD5 is the only hash nginx offers there. What it guards is small: a URL
names one file of a digest the device was allowed, for a few minutes, and
the node checks digest and signature of whatever bytes it gets.
"""

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from fogline._errors import FoglineError
from fogline.security import TokenFileError, read_token_file, write_secret_file

OFFLOAD_SECRET_FILE: Final = "artifact-offload-secret"  # noqa: S105 - a file name
# Long enough to resume a download that stalled; a retry asks the hub again
# and gets a fresh URL, so nothing needs to outlive it.
OFFLOAD_TTL_S: Final = 300
# Written into nginx's config inside double quotes: letters, digits, - and _ only.
_SECRET_RE: Final = re.compile(r"[A-Za-z0-9_-]{32,128}", re.ASCII)
_MAX_URL: Final = 512


class OffloadConfigError(FoglineError):
    """The offload URL, secret file or nginx settings are unusable (the
    operator's to fix): names which and why. The CLI prints it as one line."""


@dataclass(frozen=True, slots=True)
class ArtifactOffload:
    """Where nginx serves the artifact directory, and the secret it checks."""

    base_url: str  # https://host[:port], no path
    secret: str = field(repr=False)
    ttl_s: int = OFFLOAD_TTL_S

    def signed_url(self, uri: str, now_s: float) -> str:
        """The URL of `uri` (a path under the artifact directory, starting
        with /) that nginx accepts until `now_s + ttl_s`."""
        expires = int(now_s) + self.ttl_s
        return f"{self.base_url}{uri}?md5={sign_uri(uri, expires, self.secret)}&expires={expires}"


def sign_uri(uri: str, expires: int, secret: str) -> str:
    """nginx's `secure_link_md5 "$secure_link_expires$uri <secret>"`."""
    # MD5 because nginx's secure_link offers nothing else (see the module docstring).
    digest = hashlib.md5(f"{expires}{uri} {secret}".encode()).digest()  # noqa: S324
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_offload_url(url: str) -> str:
    """`url` without a trailing slash, if it is `https://host[:port]`.

    Raises:
        OffloadConfigError: another scheme, a path, query, fragment or
            credentials, or longer than 512 characters.
    """
    if len(url) > _MAX_URL:
        raise OffloadConfigError(f"must be at most {_MAX_URL} characters")
    parts = urlsplit(url.rstrip("/"))
    if parts.scheme != "https" or not parts.hostname:
        raise OffloadConfigError(f"must be an https://HOST[:PORT] URL (got {url[:80]!r})")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise OffloadConfigError(
            f"must be https://HOST[:PORT] with no path, query or credentials (got {url[:80]!r})"
        )
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise OffloadConfigError(f"bad port in {url[:80]!r}: {exc}") from None
    return url.rstrip("/")


def offload_secret(data_dir: Path) -> str:
    """The secret in DATA_DIR/artifact-offload-secret, made (0600) if missing.

    Raises:
        OffloadConfigError: the file is readable by others, or not a secret
            this hub made (letters, digits, - and _, 32 to 128 of them).
    """
    path = data_dir / OFFLOAD_SECRET_FILE
    if not path.exists():
        write_secret_file(path, (secrets.token_urlsafe(32) + "\n").encode())
    try:
        secret = read_token_file(path)
    except TokenFileError as exc:
        raise OffloadConfigError(str(exc)) from None
    if not _SECRET_RE.fullmatch(secret):
        raise OffloadConfigError(
            f"{path}: must hold 32 to 128 letters, digits, - or _ (remove it: the hub makes one)"
        )
    return secret
