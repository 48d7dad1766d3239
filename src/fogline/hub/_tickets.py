"""TLS session tickets shared by every hub process, so that a device that
reconnects resumes its session on whichever worker or replica accepts it,
instead of paying a full mTLS handshake (issue #18, "Reconnecting fleets").

OpenSSL encrypts tickets with keys it draws at random for each SSL_CTX: a
ticket issued by one worker is useless on another, and on the same worker
after a certificate reload. Here every process derives the key from one
secret in the data directory (DIR/tls/ticket-secret, 0600, created once,
atomically) and the number of the current period, so all of them agree and
rotate together without talking to each other:

    key(period) = HKDF-SHA256(secret, info="fogline tls ticket key" | period)
                = key name (16 bytes) | HMAC key (32) | AES key (32)

A ticket lives at most one period (the session timeout, and the next
period's key has another name, so OpenSSL treats the old ticket as unknown
and falls back to a full handshake). Tickets are bound to the fleet CA
bundle (the session id context is its hash): a new bundle ends every
session. Resumption never skips authorisation: the resumed session carries
the peer certificate, and the device API checks it against the device table
on every request (revoked, replaced).

Python's ssl module has no call to set ticket keys, so they are set with
`SSL_CTX_ctrl(SSL_CTRL_SET_TLSEXT_TICKET_KEYS)` through ctypes, on the
libssl that `_ssl` is linked against, with the SSL_CTX pointer read from
CPython's SSLContext object (its first field). That read is checked: the
pointer must answer SSL_CTX_get_options with the context's own options.
When anything does not match, the hub logs one warning and keeps OpenSSL's
own per-process keys (resumption only on the same worker): never a crash.
"""

import contextlib
import ctypes
import hashlib
import logging
import os
import secrets
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fogline._log import event

log = logging.getLogger("fogline.hub")

TICKET_SECRET_FILE: Final = "ticket-secret"  # noqa: S105 (a file name, not a secret)
DEFAULT_TICKET_PERIOD_S: Final = 3600.0
_SECRET_BYTES: Final = 32
# OpenSSL 3: the key name, the HMAC key and the AES key, in that order.
_TICKET_KEY_BYTES: Final = 16 + 32 + 32
_SSL_CTRL_SET_TLSEXT_TICKET_KEYS: Final = 59
_MAX_SID_CTX_BYTES: Final = 32  # SSL_MAX_SID_CTX_LENGTH
_SSL_CTRL_SET_SESS_CACHE_SIZE: Final = 42
_SSL_CTRL_GET_SESS_CACHE_SIZE: Final = 43


class TicketSecretError(Exception):
    """The ticket secret file exists but is not one (wrong size, not hex)."""


def load_or_create_ticket_secret(path: Path) -> bytes:
    """The secret every hub process derives ticket keys from, created 0600
    when absent.

    Processes starting together (workers, replicas on one data directory)
    all read the one that won: it is written under a temporary name and
    linked into place, which fails if another process got there first.

    Raises:
        TicketSecretError: the file is there but holds no secret.
        OSError: the directory is not writable or the file not readable.
    """
    if not path.exists():
        _create_secret(path)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != _SECRET_BYTES:
        raise TicketSecretError(
            f"{path}: expected {_SECRET_BYTES * 2} hex digits, found {len(text)} characters"
        )
    return secret


def _create_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_bytes(_SECRET_BYTES).hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its secret
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ticket_key(secret: bytes, period: int) -> bytes:
    """The 80-byte OpenSSL ticket key (name, HMAC key, AES key) for `period`."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=_TICKET_KEY_BYTES,
        salt=None,
        info=b"fogline tls ticket key" + period.to_bytes(8, "big"),
    ).derive(secret)


class TicketKeys:
    """The shared ticket keys: which period it is, and the key for it."""

    def __init__(
        self, secret: bytes, period_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"ticket period must be positive, got {period_s}")
        self._secret = secret
        self.period_s = period_s
        self._clock = clock

    def period(self) -> int:
        return int(self._clock() // self.period_s)

    def key(self, period: int) -> bytes:
        return ticket_key(self._secret, period)


class _LibSsl:
    """The few libssl functions Python does not expose, typed for ctypes."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.get_options = lib.SSL_CTX_get_options
        self.get_options.restype = ctypes.c_uint64
        self.get_options.argtypes = [ctypes.c_void_p]
        self.ctrl = lib.SSL_CTX_ctrl
        self.ctrl.restype = ctypes.c_long
        self.ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        self.set_timeout = lib.SSL_CTX_set_timeout
        self.set_timeout.restype = ctypes.c_long
        self.set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
        self.set_sid_ctx = lib.SSL_CTX_set_session_id_context
        self.set_sid_ctx.restype = ctypes.c_int
        self.set_sid_ctx.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint]


_lib: _LibSsl | None = None
_lib_failed = False
_warned = False


def _load_libssl() -> _LibSsl | None:
    global _lib, _lib_failed
    if _lib is None and not _lib_failed:
        try:
            import _ssl  # the extension module; dlsym on it searches the libssl it links

            _lib = _LibSsl(ctypes.CDLL(_ssl.__file__))
        except (ImportError, AttributeError, OSError):
            _lib_failed = True
    return _lib


def _layout_known() -> bool:
    """CPython 3.8 to 3.13 start PySSLContext with `SSL_CTX *ctx`; another
    interpreter or version is not read at all."""
    return (
        sys.implementation.name == "cpython"
        and (3, 8) <= sys.version_info[:2] <= (3, 13)
        and ssl.SSLContext.__basicsize__ >= object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)
    )


def _ctx_pointer(context: ssl.SSLContext) -> int | None:
    """The SSL_CTX* inside `context`: the first field after CPython's object
    header (PySSLContext in Modules/_ssl.c)."""
    address = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    return address or None


def _warn_once(reason: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        event(log, "hub.tls_tickets_not_shared", logging.WARNING, reason=reason)


def _checked_ctx(context: ssl.SSLContext) -> tuple[_LibSsl, int] | None:
    lib = _load_libssl()
    if lib is None:
        _warn_once("libssl functions not found through the _ssl module")
        return None
    if not _layout_known():
        _warn_once(f"no known SSLContext layout for {sys.implementation.name} {sys.version}")
        return None
    pointer = _ctx_pointer(context)
    # The guard: a pointer that is not this context's SSL_CTX would not
    # report exactly its options (and is never written through).
    if (
        pointer is None
        or pointer % ctypes.alignment(ctypes.c_void_p)
        or lib.get_options(pointer) != context.options
    ):
        _warn_once("the SSLContext layout is not the one expected")
        return None
    return lib, pointer


def share_ticket_key(context: ssl.SSLContext, key: bytes) -> bool:
    """Encrypt and accept tickets of `context` with `key` (see `ticket_key`);
    False (and one warning per process) if it cannot be set safely."""
    if len(key) != _TICKET_KEY_BYTES:
        raise ValueError(f"ticket key must be {_TICKET_KEY_BYTES} bytes, got {len(key)}")
    checked = _checked_ctx(context)
    if checked is None:
        return False
    lib, pointer = checked
    buffer = ctypes.create_string_buffer(key, len(key))
    ok = bool(lib.ctrl(pointer, _SSL_CTRL_SET_TLSEXT_TICKET_KEYS, len(key), buffer) == 1)
    ctypes.memset(buffer, 0, len(key))
    if not ok:
        _warn_once("SSL_CTX_ctrl refused the ticket key")
    return ok


def bind_sessions(context: ssl.SSLContext, *, ca_bundle: bytes, lifetime_s: float) -> bool:
    """Limit the sessions `context` resumes: to `lifetime_s` after the full
    handshake, and to this CA bundle (another bundle, another session id
    context: tickets issued before a CA change are not resumed)."""
    checked = _checked_ctx(context)
    if checked is None:
        return False
    lib, pointer = checked
    sid_ctx = hashlib.sha256(b"fogline sessions\0" + ca_bundle).digest()[:_MAX_SID_CTX_BYTES]
    lib.set_timeout(pointer, max(1, int(lifetime_s)))
    return bool(lib.set_sid_ctx(pointer, sid_ctx, len(sid_ctx)) == 1)


def issue_no_tickets(context: ssl.SSLContext) -> None:
    """No session tickets at all (`--no-tls-tickets`): every connection
    pays a full handshake, as before resumption existed."""
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0


def keep_sessions(context: ssl.SSLContext, *, max_sessions: int) -> bool:
    """Stateful tickets: `context` keeps each session in its own in-memory
    cache (at most `max_sessions`, the oldest dropped first) and the ticket
    is only the session's id, so a resumption neither decrypts nor decodes a
    session (nor the peer certificate in it). The cache is this process's:
    a ticket resumes only on the worker that issued it. Call after
    `bind_sessions` (the cache's timeout is the sessions' lifetime)."""
    if max_sessions < 1:
        raise ValueError(f"max_sessions must be positive, got {max_sessions}")
    checked = _checked_ctx(context)
    if checked is None:
        return False
    lib, pointer = checked
    lib.ctrl(pointer, _SSL_CTRL_SET_SESS_CACHE_SIZE, max_sessions, None)
    if lib.ctrl(pointer, _SSL_CTRL_GET_SESS_CACHE_SIZE, 0, None) != max_sessions:
        _warn_once("SSL_CTX_sess_set_cache_size did not take")
        return False
    # In TLS 1.3, OpenSSL answers SSL_OP_NO_TICKET with stateful tickets.
    context.options |= ssl.OP_NO_TICKET
    return True
