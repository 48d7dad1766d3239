"""The agent's artifact downloads: HttpArtifactSource's requests, made by a
blocking httpx client in a worker thread.

Why a thread: httpx's async client reads TLS through anyio's memory BIOs,
a few Python layers per 16 KiB record. A 5 MB download cost the node 33 ms
of CPU that way against 17 ms for the same library blocking, on a plain
SSL socket (curl: 10.5 ms; `benchmarks/bench_download_client.py`). On a
small node and across a fleet's rollout that is most of the difference.

The thread is the only thing that touches its client and file; everything
the updater hands in (`on_bytes`: progress, limits, crash points) runs on
the event loop, which the thread waits for. Cancelling the fetch shuts the
socket being read, so the thread stops at once instead of at its next
chunk or read timeout, and the cancellation passes on only once the thread
has finished: no write into the partial file outlives its fetch.
"""

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from fogline.hubclient import HubError, map_transport_errors

from ._errors import ArtifactFetchError
from ._http import PartialWriter, checked_template, offload_target, request_headers, start_of


class _Aborted(Exception):
    """The fetch was cancelled; the thread stops reading."""


class _Abort:
    """Lets the event loop stop a download its worker thread is reading."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self.requested = False

    def watch(self, response: httpx.Response) -> None:
        """Remember the socket `response` is read from (and shut it if the
        abort came first)."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
            if self.requested:
                self._shut()

    def abort(self) -> None:
        with self._lock:
            self.requested = True
            self._shut()

    def _shut(self) -> None:
        # The plain socket's shutdown, also under TLS: SSLSocket's own would
        # unwrap the connection under the reading thread. Already closed: the
        # read has ended anyway.
        if self._socket is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)

    def check(self) -> None:
        if self.requested:
            raise _Aborted


class ThreadedHttpArtifactSource:
    """An ArtifactSource (and DeltaSource) whose requests run in a worker
    thread over a blocking client from `make_client` (one per fetch, closed
    after it). Answers, ranges, redirects and errors are HttpArtifactSource's.
    """

    def __init__(
        self,
        make_client: Callable[[], httpx.Client],
        path_template: str = "/v1/artifacts/{digest}",
    ) -> None:
        self._make_client = make_client
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

        def fetch(client: httpx.Client, abort: _Abort, progress: Callable[[int], None]) -> None:
            with _get(client, abort, digest, url, headers) as response:
                start = start_of(digest, response, offset)
                if start is None:
                    progress(offset)  # already complete
                    return
                _write_body(response, abort, dest, start, progress)

        await self._run(digest, fetch, on_bytes)

    async def fetch_delta(
        self, digest: str, base: str, dest: Path, *, on_bytes: Callable[[int], None]
    ) -> None:
        """See DeltaSource.fetch_delta.

        Raises:
            ArtifactFetchError: any status but 200 (404: the hub has none), or
                the transport failed.
        """
        url = self._template.format(digest=digest) + "/delta"
        headers = request_headers()

        def fetch(client: httpx.Client, abort: _Abort, progress: Callable[[int], None]) -> None:
            with _get(client, abort, digest, url, headers, {"from": base}) as response:
                if response.status_code != 200:
                    raise ArtifactFetchError(
                        digest,
                        f"no delta from {base}: {response.status_code}",
                        status=response.status_code,
                    )
                _write_body(response, abort, dest, 0, progress)

        await self._run(digest, fetch, on_bytes)

    async def _run(
        self,
        digest: str,
        fetch: Callable[[httpx.Client, _Abort, Callable[[int], None]], None],
        on_bytes: Callable[[int], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        abort = _Abort()

        def progress(size: int) -> None:
            # The updater's callback, on the loop; the thread waits for it
            # (it may raise to stop at a limit).
            done: concurrent.futures.Future[None] = concurrent.futures.Future()

            def call() -> None:
                try:
                    on_bytes(size)
                except BaseException as exc:  # handed to the thread, raised there
                    done.set_exception(exc)
                else:
                    done.set_result(None)

            loop.call_soon_threadsafe(call)
            done.result()

        def work() -> None:
            with self._make_client() as client:
                try:
                    with map_transport_errors(str(client.base_url)):
                        fetch(client, abort, progress)
                except HubError as exc:
                    # Transport, timeout, protocol: retrying is safe, the partial stays.
                    raise ArtifactFetchError(digest, str(exc)) from exc

        future = loop.run_in_executor(None, work)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            abort.abort()
            await asyncio.wait([future])
            if not future.cancelled():
                future.exception()  # the read the abort broke: nobody wants it
            raise


@contextmanager
def _get(
    client: httpx.Client,
    abort: _Abort,
    digest: str,
    url: str,
    headers: dict[str, str],
    params: dict[str, str] | None = None,
) -> Iterator[httpx.Response]:
    """GET `url`, following the hub's one offload redirect (see HttpArtifactSource._get)."""
    abort.check()
    with client.stream("GET", url, headers=headers, params=params) as response:
        abort.watch(response)
        if response.status_code != 307:
            yield response
            return
        target = offload_target(digest, response.headers.get("location", ""))
    abort.check()
    with client.stream("GET", target, headers=headers) as response:
        abort.watch(response)
        if response.is_redirect:
            status = response.status_code
            raise ArtifactFetchError(digest, "offload server redirected again", status=status)
        yield response


def _write_body(
    response: httpx.Response,
    abort: _Abort,
    dest: Path,
    start: int,
    on_bytes: Callable[[int], None],
) -> None:
    with PartialWriter(dest, start, on_bytes) as writer:
        for chunk in response.iter_raw():
            abort.check()
            writer.add(chunk)
