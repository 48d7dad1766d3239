"""nginx's side of artifact offload (_offload.py): a `server` block that
serves the hub's artifact directory read-only, over TLS, to signed URLs only.

Only two shapes of path are served, each checked by `secure_link` (a
missing, wrong or expired signature: 403): the archives,
`/sha256/<2 hex>/<62 hex>`, and the cached deltas,
`/deltas/<64 hex>/<64 hex>.zst`. Everything else (the upload staging
directory `tmp/`, listings, paths outside the directory) answers 404. nginx
matches locations against the normalised URI, so `..` and `%2e%2e` are
resolved before the patterns see them.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ._offload import OffloadConfigError

# What nginx would read as the end of a string, a variable or a directive.
_UNSAFE: Final = re.compile(r"[\"'$\\;{}\s]")
_LISTEN_RE: Final = re.compile(r"(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):)?([0-9]{1,5})", re.ASCII)
_NAME_RE: Final = re.compile(r"[A-Za-z0-9.*_-]{1,253}", re.ASCII)

# Connections waiting for nginx's accept. nginx's own default on Linux is 511:
# a wave of devices following the hub's redirects at once overflowed it, and
# the connects dropped from it timed out (BENCHMARKS.md, bulk downloads).
# The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG: Final = 4096

_LOCATIONS: Final = (
    r"^/sha256/[0-9a-f]{2}/[0-9a-f]{62}$",
    r"^/deltas/[0-9a-f]{64}/[0-9a-f]{64}\.zst$",
)


@dataclass(frozen=True, slots=True)
class NginxSite:
    """What the generated server block needs."""

    artifacts_dir: Path
    listen: str  # [HOST:]PORT
    server_name: str
    cert: Path
    key: Path
    secret: str = field(repr=False)


def _quoted(what: str, value: str) -> str:
    if _UNSAFE.search(value):
        raise OffloadConfigError(
            f"{what}: {value[:80]!r} holds a quote, $, \\, ;, brace or space that nginx "
            "would misread"
        )
    return f'"{value}"'


def _listen(listen: str) -> str:
    match = _LISTEN_RE.fullmatch(listen)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise OffloadConfigError(f"--listen must be [HOST:]PORT (got {listen[:80]!r})")
    return listen


def nginx_server_block(site: NginxSite) -> str:
    """The `server { ... }` block for nginx's `http` context.

    Raises:
        OffloadConfigError: a path, name or address nginx would misread.
    """
    if not _NAME_RE.fullmatch(site.server_name):
        raise OffloadConfigError(f"--server-name: not a host name (got {site.server_name[:80]!r})")
    root = _quoted("artifact directory", str(site.artifacts_dir.absolute()))
    # secure_link_md5 "$secure_link_expires$uri SECRET": see _offload.sign_uri.
    _quoted("secret", site.secret)  # checked only: it sits inside a string below
    locations = "".join(
        f"""
    location ~ "{pattern}" {{
        limit_except GET {{ deny all; }}
        secure_link $arg_md5,$arg_expires;
        secure_link_md5 "$secure_link_expires$uri {site.secret}";
        # "": no or a wrong signature; "0": expired.
        if ($secure_link = "") {{ return 403; }}
        if ($secure_link = "0") {{ return 403; }}
        default_type application/zstd;
        add_header Cache-Control "private, no-store" always;
    }}
"""
        for pattern in _LOCATIONS
    )
    return f"""\
# Fogline artifact offload, made by `fogline hub nginx-config`. It holds the
# offload secret: keep it readable by root (and nginx's master) only.
server {{
    listen {_listen(site.listen)} ssl backlog={LISTEN_BACKLOG};
    server_name {site.server_name};
    ssl_certificate {_quoted("certificate", str(site.cert.absolute()))};
    ssl_certificate_key {_quoted("key", str(site.key.absolute()))};
    ssl_protocols TLSv1.2 TLSv1.3;
    server_tokens off;
    autoindex off;
    root {root};
{locations}
    location / {{ return 404; }}
}}
"""
