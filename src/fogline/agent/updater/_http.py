"""Fetch archives from the hub with HTTP range requests, so a download resumes.

A hub that offloads downloads (`--artifact-offload`) answers an authorised
request with `307` to a short-lived signed URL on nginx. The node follows
that one redirect, from the hub's own answer, to an https URL only, with the
same client: the offload host must present a certificate from the fleet's
CA, as the hub does. nginx may not redirect again. The bytes are trusted no
more for where they came from: digest and signature are checked as always.
"""

import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import httpx

from fogline._durable import write_all
from fogline.hubclient import HubError, error_for_response, map_transport_errors

from ._errors import ArtifactFetchError

_CONTENT_RANGE_RE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)", re.ASCII)
_UNSATISFIED_RE: Final = re.compile(r"bytes \*/(\d+)", re.ASCII)
_MAX_LOCATION: Final = 2048
# Bytes gathered from the body before one write to the partial file. A TLS
# record carries at most 16 KiB, so writing each as it came cost a write(2),
# a progress callback and a crash-hook call per record: about 330 of each
# for a 5 MB release. A crash loses at most this much to the resume.
WRITE_BYTES: Final = 256 * 1024


class HttpArtifactSource:
    """An ArtifactSource over an httpx client (the agent's mTLS client to the hub).

    Asks for `Range: bytes=<offset>-`. A 206 appends from the offset; a 200
    (a server or proxy that ignores ranges) starts the file over from zero;
    a 416 whose total equals the offset means the file was already complete.
    """

    def __init__(
        self, client: httpx.AsyncClient, path_template: str = "/v1/artifacts/{digest}"
    ) -> None:
        self._client = client
        self._template = checked_template(path_template)

    async def fetch(
        self, digest: str, dest: Path, *, offset: int, on_bytes: Callable[[int], None]
    ) -> None:
        """See ArtifactSource.fetch.

        Raises:
            ArtifactFetchError: transport failure or timeout (transient), an
                HTTP error status, or a response that does not fit the request.
        """
        url = self._template.format(digest=digest)
        headers = request_headers(offset)
        try:
            with map_transport_errors(str(self._client.base_url)):
                async with self._get(digest, url, headers) as response:
                    start = start_of(digest, response, offset)
                    if start is None:
                        on_bytes(offset)  # already complete
                        return
                    await _write_body(response, dest, start, on_bytes)
        except HubError as exc:
            # Transport, timeout, protocol: retrying is safe, the partial stays.
            raise ArtifactFetchError(digest, str(exc)) from exc

    async def fetch_delta(
        self, digest: str, base: str, dest: Path, *, on_bytes: Callable[[int], None]
    ) -> None:
        """See DeltaSource.fetch_delta: `GET <artifact>/delta?from=<base>`, whole.

        Raises:
            ArtifactFetchError: any status but 200 (404: the hub has none), or
                the transport failed.
        """
        url = self._template.format(digest=digest) + "/delta"
        try:
            with map_transport_errors(str(self._client.base_url)):
                async with self._get(
                    digest, url, request_headers(), params={"from": base}
                ) as response:
                    if response.status_code != 200:
                        raise ArtifactFetchError(
                            digest,
                            f"no delta from {base}: {response.status_code}",
                            status=response.status_code,
                        )
                    await _write_body(response, dest, 0, on_bytes)
        except HubError as exc:
            raise ArtifactFetchError(digest, str(exc)) from exc

    @asynccontextmanager
    async def _get(
        self,
        digest: str,
        url: str,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """GET `url` from the hub, following its one offload redirect.

        Raises:
            ArtifactFetchError: the redirect is not to an absolute https URL,
                or the offload server redirected again (status 307 or its own).
            HubError: the transport failed (see map_transport_errors).
        """
        async with self._client.stream("GET", url, headers=headers, params=params) as response:
            if response.status_code != 307:
                yield response
                return
            target = offload_target(digest, response.headers.get("location", ""))
        # The hub's answer is closed first: its connection goes back to the pool.
        async with self._client.stream("GET", target, headers=headers) as response:
            if response.is_redirect:
                status = response.status_code
                raise ArtifactFetchError(digest, "offload server redirected again", status=status)
            yield response


def checked_template(path_template: str) -> str:
    """`path_template`, if it names where the digest goes.

    Raises:
        ValueError: it does not contain `{digest}`.
    """
    if "{digest}" not in path_template:
        raise ValueError(f"path_template must contain {{digest}}, got {path_template!r}")
    return path_template


def request_headers(offset: int = 0) -> dict[str, str]:
    """A download's headers: bytes from `offset` on, never encoded (ranges
    count encoded bytes: asking for none makes offsets file bytes)."""
    headers = {"Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    return headers


def start_of(digest: str, response: httpx.Response, offset: int) -> int | None:
    """Where the body of `response` (to `Range: bytes=<offset>-`) goes in the
    file: 0 for a 200, `offset` for a matching 206; None when a 416 says the
    file is already complete.

    Raises:
        ArtifactFetchError: any other answer, or a 206 of other bytes.
    """
    status = response.status_code
    if status == 200:
        return 0
    if status == 206:
        match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("content-range", ""))
        if match is None or int(match.group(1)) != offset:
            raise ArtifactFetchError(
                digest,
                f"asked for bytes from {offset}, got Content-Range "
                f"{response.headers.get('content-range', '')[:80]!r}",
                status=status,
            )
        return offset
    if status == 416 and offset > 0:
        match = _UNSATISFIED_RE.fullmatch(response.headers.get("content-range", ""))
        if match is not None and int(match.group(1)) == offset:
            return None
        # The partial file is longer than the artifact: a transient error,
        # and the caller's next attempt should start from zero.
        raise ArtifactFetchError(digest, "partial download longer than the artifact", status=status)
    # Any other answer means what it means to every caller of the hub.
    error = error_for_response(response)
    raise ArtifactFetchError(
        digest,
        response.reason_phrase or "unexpected status",
        status=status,
        retry_after_s=error.retry_after_s if error is not None else None,
    )


def offload_target(digest: str, location: str) -> httpx.URL:
    """The hub's redirect target, if it is an absolute https URL on a host
    (no credentials); what the hub signed is used as it is.

    Raises:
        ArtifactFetchError: anything else (status 307).
    """
    try:
        target = httpx.URL(location) if 0 < len(location) <= _MAX_LOCATION else None
    except httpx.InvalidURL:
        target = None
    if target is None or target.scheme != "https" or not target.host or target.userinfo:
        raise ArtifactFetchError(
            digest, f"refused redirect to {location[:100]!r}: not an https URL", status=307
        )
    return target


class PartialWriter:
    """Appends a body to the partial file from `start`, in writes of
    WRITE_BYTES; `on_bytes` is told the file's size after each (it may raise
    to stop at a limit). Use as a context manager: leaving it on an error
    writes what arrived (the digest decides at the end, and the next attempt
    resumes after it); leaving it cleanly writes the rest and says so."""

    def __init__(self, dest: Path, start: int, on_bytes: Callable[[int], None]) -> None:
        self._fd = os.open(dest, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(self._fd, start)
            os.lseek(self._fd, start, os.SEEK_SET)
        except BaseException:
            os.close(self._fd)
            raise
        self._position = start
        self._pending = bytearray()
        self._on_bytes = on_bytes

    def add(self, chunk: bytes) -> None:
        self._pending += chunk
        if len(self._pending) >= WRITE_BYTES:
            self._flush()

    def _flush(self) -> None:
        write_all(self._fd, self._pending)
        self._position += len(self._pending)
        self._pending.clear()
        self._on_bytes(self._position)

    def __enter__(self) -> "PartialWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is not None:
                # A limit `on_bytes` enforces is passed by at most one write:
                # WRITE_BYTES and the last read.
                write_all(self._fd, self._pending)
            elif self._pending:
                self._flush()
        finally:
            os.close(self._fd)


async def _write_body(
    response: httpx.Response, dest: Path, start: int, on_bytes: Callable[[int], None]
) -> None:
    """Write the body at `start` (see PartialWriter)."""
    with PartialWriter(dest, start, on_bytes) as writer:
        async for chunk in response.aiter_raw():
            writer.add(chunk)
