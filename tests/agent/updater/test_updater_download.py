"""Downloads resume from the partial file: in memory, and over real HTTP range requests."""

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from fogline.agent.updater import (
    ArtifactFetchError,
    ArtifactSource,
    HttpArtifactSource,
    MemoryActivator,
    State,
    ThreadedHttpArtifactSource,
    UpdateLimits,
)
from fogline.agent.updater._http import WRITE_BYTES
from fogline.artifact import ReleaseKeyPair

from ._support import NAME, MakeNode, Node, Release

# -- in memory -------------------------------------------------------------------


def test_an_interrupted_download_resumes_from_the_partial_offset(
    make_node: MakeNode,
    releases: dict[str, Release],
) -> None:
    v1 = releases["1.0.0"]
    third = len(v1.blob) // 3 + 1
    node = make_node(v1)
    node.source.fail_after_bytes = third
    result = asyncio.run(node.updater().ensure(v1.target))
    assert result.ok
    offsets = [offset for _digest, offset in node.source.fetches]
    assert offsets == [0, third, 2 * third]
    assert node.activator.running == {NAME: "1.0.0"}


def test_a_download_that_keeps_failing_is_retryable_and_resumes_next_time(
    make_node: MakeNode,
    releases: dict[str, Release],
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    node = make_node(v1, v2, limits=UpdateLimits(download_attempts=2))
    up = node.updater()
    assert asyncio.run(up.ensure(v1.target)).ok
    node.source.fail_after_bytes = 5000
    result = asyncio.run(up.ensure(v2.target))

    assert result.state is State.FAILED and result.failed_in is State.DOWNLOAD
    assert result.retryable and "connection reset" in (result.error or "")
    assert up.failure(NAME) is None  # not the release's fault: not recorded
    assert node.activator.running == {NAME: "1.0.0"}
    partial = node.root / "downloads" / f"{v2.target.digest}.partial"
    assert partial.stat().st_size == 10_000  # kept for the next attempt

    node.source.fail_after_bytes = None
    node.source.fetches.clear()
    assert asyncio.run(node.updater().ensure(v2.target)).ok
    assert node.source.fetches == [(v2.target.digest, 10_000)]
    assert node.activator.running == {NAME: "2.0.0"}


def test_a_corrupt_partial_file_is_fetched_again_from_zero(
    make_node: MakeNode,
    releases: dict[str, Release],
) -> None:
    v1 = releases["1.0.0"]
    node = make_node(v1)
    downloads = node.root / "downloads"
    downloads.mkdir(parents=True)
    (downloads / f"{v1.target.digest}.partial").write_bytes(b"\0" * 1000)  # a torn tail
    assert asyncio.run(node.updater().ensure(v1.target)).ok
    assert node.source.fetches == [(v1.target.digest, 1000), (v1.target.digest, 0)]


def test_backoff_waits_between_attempts(
    tmp_path: Path,
    releases: dict[str, Release],
    key: ReleaseKeyPair,
) -> None:
    from fogline.agent._backoff import Backoff
    from fogline.agent.updater import Updater

    from ._support import serve, trusted

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    v1 = releases["1.0.0"]
    up = Updater(
        tmp_path,
        source=serve(v1, fail_after_bytes=len(v1.blob) // 2 + 1),
        activator=MemoryActivator(),
        trusted_keys=trusted(key),
        backoff=lambda: Backoff(initial_s=1.0, rand=lambda: 1.0),
        sleep=sleep,
    )
    assert asyncio.run(up.ensure(v1.target)).ok
    assert waits == [1.0]


# -- over HTTP -------------------------------------------------------------------


@dataclass
class ArtifactServer:
    """A tiny artifact server on 127.0.0.1 that honours `Range: bytes=N-`."""

    blobs: dict[str, bytes]
    honour_range: bool = True
    drop_first_after: int | None = None  # cut the first response's body after N bytes
    stall_first_after: int | None = None  # the first body stops after N bytes until `unstall`
    unstall: threading.Event = field(default_factory=threading.Event)
    lie_about_range: bool = False  # answer 206 for bytes 0- whatever was asked
    busy_first: tuple[int, str] | None = None  # (status, Retry-After) for the first request
    seen: list[tuple[str | None, int]] = field(default_factory=list)  # (Range, status)
    url: str = ""


@pytest.fixture
def server(releases: dict[str, Release]) -> Iterator[ArtifactServer]:
    state = ArtifactServer({r.target.digest: r.blob for r in releases.values()})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if state.busy_first is not None and not state.seen:
                status, retry_after = state.busy_first
                self._send(status, b"busy", self.headers.get("Range"), {"Retry-After": retry_after})
                return
            digest = unquote(self.path.removeprefix("/v1/artifacts/"))
            blob = state.blobs.get(digest)
            wanted = self.headers.get("Range")
            if blob is None:
                self._send(404, b"not found", wanted)
                return
            start = 0
            if wanted and state.honour_range:
                start = int(wanted.removeprefix("bytes=").removesuffix("-"))
                if start >= len(blob):
                    self._send(416, b"", wanted, {"Content-Range": f"bytes */{len(blob)}"})
                    return
                shown = 0 if state.lie_about_range else start
                headers = {"Content-Range": f"bytes {shown}-{len(blob) - 1}/{len(blob)}"}
                self._send(206, blob[start:], wanted, headers)
            else:
                self._send(200, blob, wanted)

        def _send(
            self,
            status: int,
            body: bytes,
            wanted: str | None,
            headers: dict[str, str] | None = None,
        ) -> None:
            first = not state.seen
            state.seen.append((wanted, status))
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if first and state.stall_first_after is not None:
                self.wfile.write(body[: state.stall_first_after])
                self.wfile.flush()
                state.unstall.wait(30)
                self.close_connection = True
                return
            if first and state.drop_first_after is not None:
                self.wfile.write(body[: state.drop_first_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        state.unstall.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# Both sources over the same server: the async client's, and the agent's
# (requests in a worker thread over a blocking client).
SOURCES = ["async", "threaded"]


@asynccontextmanager
async def artifact_source(kind: str, url: str) -> AsyncIterator[ArtifactSource]:
    if kind == "threaded":
        yield ThreadedHttpArtifactSource(lambda: httpx.Client(base_url=url, timeout=5))
        return
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        yield HttpArtifactSource(client)


async def _fetch(url: str, digest: str, dest: Path, offset: int, kind: str) -> list[int]:
    sizes: list[int] = []
    async with artifact_source(kind, url) as source:
        await source.fetch(digest, dest, offset=offset, on_bytes=sizes.append)
    return sizes


@pytest.mark.parametrize("kind", SOURCES)
def test_http_resume_sends_a_range_and_appends_the_206_body(
    server: ArtifactServer, releases: dict[str, Release], tmp_path: Path, kind: str
) -> None:
    blob, digest = releases["1.0.0"].blob, releases["1.0.0"].target.digest
    dest = tmp_path / "a.partial"
    dest.write_bytes(blob[:1000])
    sizes = asyncio.run(_fetch(server.url, digest, dest, 1000, kind))
    assert server.seen == [("bytes=1000-", 206)]
    assert dest.read_bytes() == blob
    assert sizes[-1] == len(blob) and sizes == sorted(sizes)


@pytest.mark.parametrize("kind", SOURCES)
def test_http_a_server_ignoring_ranges_restarts_from_zero(
    server: ArtifactServer, releases: dict[str, Release], tmp_path: Path, kind: str
) -> None:
    server.honour_range = False
    blob, digest = releases["1.0.0"].blob, releases["1.0.0"].target.digest
    dest = tmp_path / "a.partial"
    dest.write_bytes(b"x" * 1000)  # would corrupt the file if appended to
    asyncio.run(_fetch(server.url, digest, dest, 1000, kind))
    assert server.seen == [("bytes=1000-", 200)]
    assert dest.read_bytes() == blob


@pytest.mark.parametrize("kind", SOURCES)
def test_http_416_at_the_full_size_means_already_complete(
    server: ArtifactServer, releases: dict[str, Release], tmp_path: Path, kind: str
) -> None:
    blob, digest = releases["1.0.0"].blob, releases["1.0.0"].target.digest
    dest = tmp_path / "a.partial"
    dest.write_bytes(blob)
    assert asyncio.run(_fetch(server.url, digest, dest, len(blob), kind)) == [len(blob)]
    assert server.seen == [(f"bytes={len(blob)}-", 416)] and dest.read_bytes() == blob


def _large_blob(server: ArtifactServer, size: int) -> tuple[bytes, str]:
    """A body of several writes, served under its own digest."""
    blob = os.urandom(size)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    server.blobs[digest] = blob
    return blob, digest


@pytest.mark.parametrize("kind", SOURCES)
def test_http_a_body_is_written_in_few_large_writes(
    server: ArtifactServer, tmp_path: Path, kind: str
) -> None:
    blob, digest = _large_blob(server, 4 * WRITE_BYTES + 12_345)
    dest = tmp_path / "a.partial"
    sizes = asyncio.run(_fetch(server.url, digest, dest, 0, kind))
    assert dest.read_bytes() == blob
    # One size per write (not one per TLS record or socket read): steps of
    # at least WRITE_BYTES, then the remainder.
    steps = [b - a for a, b in zip([0, *sizes], sizes, strict=False)]
    assert sizes[-1] == len(blob) and len(sizes) <= 5
    assert all(step >= WRITE_BYTES for step in steps[:-1]) and steps[-1] > 0


@pytest.mark.parametrize("kind", SOURCES)
def test_http_a_body_dropped_midway_keeps_every_byte_received_and_resumes(
    server: ArtifactServer, tmp_path: Path, kind: str
) -> None:
    blob, digest = _large_blob(server, 3 * WRITE_BYTES)
    cut = WRITE_BYTES + 5000  # one write done, 5000 bytes still gathered
    server.drop_first_after = cut
    dest = tmp_path / "a.partial"
    with pytest.raises(ArtifactFetchError) as dropped:
        asyncio.run(_fetch(server.url, digest, dest, 0, kind))
    assert dropped.value.is_transient
    assert dest.read_bytes() == blob[:cut]
    asyncio.run(_fetch(server.url, digest, dest, cut, kind))
    assert server.seen == [(None, 200), (f"bytes={cut}-", 206)]
    assert dest.read_bytes() == blob


@pytest.mark.parametrize("kind", SOURCES)
def test_http_a_limit_stops_an_oversized_body_within_one_write(
    server: ArtifactServer, tmp_path: Path, kind: str
) -> None:
    _, digest = _large_blob(server, 8 * WRITE_BYTES)
    limit = WRITE_BYTES + 1

    class TooLarge(Exception):
        pass

    def on_bytes(size: int) -> None:
        if size > limit:
            raise TooLarge(size)

    async def fetch() -> None:
        async with artifact_source(kind, server.url) as source:
            await source.fetch(digest, tmp_path / "a.partial", offset=0, on_bytes=on_bytes)

    with pytest.raises(TooLarge):
        asyncio.run(fetch())
    # One write past the limit at most: WRITE_BYTES and the read that filled it.
    assert (tmp_path / "a.partial").stat().st_size < limit + 2 * WRITE_BYTES


@pytest.mark.parametrize("kind", SOURCES)
def test_http_errors_say_whether_a_retry_can_help(
    server: ArtifactServer, tmp_path: Path, kind: str
) -> None:
    missing = "sha256:" + "0" * 64
    with pytest.raises(ArtifactFetchError) as caught:
        asyncio.run(_fetch(server.url, missing, tmp_path / "m", 0, kind))
    assert caught.value.status == 404 and not caught.value.is_transient

    with pytest.raises(ArtifactFetchError) as refused:  # nothing listens on port 1
        asyncio.run(_fetch("http://127.0.0.1:1", missing, tmp_path / "m", 0, kind))
    assert refused.value.status is None and refused.value.is_transient


@pytest.mark.parametrize("kind", SOURCES)
def test_updater_over_http_resumes_a_dropped_download(
    server: ArtifactServer,
    releases: dict[str, Release],
    tmp_path: Path,
    key: ReleaseKeyPair,
    kind: str,
) -> None:
    v1 = releases["1.0.0"]
    server.drop_first_after = 7000

    async def scenario() -> bool:
        async with artifact_source(kind, server.url) as source:
            node = Node(tmp_path / "node", source, MemoryActivator(), key)  # type: ignore[arg-type]
            result = await node.updater().ensure(v1.target)
            return result.ok and node.activator.running == {NAME: "1.0.0"}

    assert asyncio.run(scenario())
    assert server.seen == [(None, 200), ("bytes=7000-", 206)]


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("kind", SOURCES)
def test_updater_over_http_waits_as_long_as_retry_after_asks(
    server: ArtifactServer,
    releases: dict[str, Release],
    tmp_path: Path,
    key: ReleaseKeyPair,
    status: int,
    kind: str,
) -> None:
    from fogline.agent._backoff import Backoff
    from fogline.agent.updater import Updater

    from ._support import trusted

    v1 = releases["1.0.0"]
    server.busy_first = (status, "7")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def scenario() -> bool:
        async with artifact_source(kind, server.url) as source:
            up = Updater(
                tmp_path,
                source=source,
                activator=MemoryActivator(),
                trusted_keys=trusted(key),
                backoff=lambda: Backoff(initial_s=1.0, rand=lambda: 0.0),
                sleep=sleep,
            )
            return (await up.ensure(v1.target)).ok

    assert asyncio.run(scenario())
    assert server.seen == [(None, status), (None, 200)]
    assert waits == [7.0]  # the hint, plus a jittered draw of 0


@pytest.mark.parametrize("kind", SOURCES)
def test_updater_over_http_refuses_a_server_serving_other_bytes(
    server: ArtifactServer,
    releases: dict[str, Release],
    tmp_path: Path,
    key: ReleaseKeyPair,
    kind: str,
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    server.blobs[v1.target.digest] = v2.blob

    async def scenario() -> tuple[State, State | None]:
        async with artifact_source(kind, server.url) as source:
            node = Node(tmp_path / "node", source, MemoryActivator(), key)  # type: ignore[arg-type]
            result = await node.updater().ensure(v1.target)
            return result.state, result.failed_in

    assert asyncio.run(scenario()) == (State.FAILED, State.DOWNLOAD)


def test_target_size_is_reported_as_the_download_total(
    make_node: MakeNode,
    releases: dict[str, Release],
) -> None:
    v1 = releases["1.0.0"]
    node = make_node(v1)
    assert asyncio.run(node.updater().ensure(replace(v1.target, size=len(v1.blob)))).ok
    totals = {r.bytes_total for r in node.reports if r.state is State.DOWNLOAD and r.bytes_done}
    assert totals == {len(v1.blob)}


@pytest.mark.parametrize("kind", SOURCES)
def test_http_a_206_for_other_bytes_than_asked_is_refused(
    server: ArtifactServer, releases: dict[str, Release], tmp_path: Path, kind: str
) -> None:
    server.lie_about_range = True
    blob, digest = releases["1.0.0"].blob, releases["1.0.0"].target.digest
    dest = tmp_path / "a.partial"
    dest.write_bytes(blob[:1000])
    with pytest.raises(ArtifactFetchError, match="asked for bytes from 1000"):
        asyncio.run(_fetch(server.url, digest, dest, 1000, kind))
    assert dest.read_bytes() == blob[:1000]  # nothing appended


def test_http_the_path_template_must_name_the_digest() -> None:
    with pytest.raises(ValueError, match="digest"):
        HttpArtifactSource(httpx.AsyncClient(), "/v1/artifacts/latest")


def test_threaded_the_updater_s_callback_runs_on_the_event_loop(
    server: ArtifactServer, tmp_path: Path
) -> None:
    """Progress, limits and crash points touch the agent's loop objects:
    the worker thread hands each size to the loop and waits for it."""
    blob, digest = _large_blob(server, 3 * WRITE_BYTES)
    threads: set[int] = set()

    async def fetch() -> int:
        def on_bytes(size: int) -> None:
            threads.add(threading.get_ident())

        async with artifact_source("threaded", server.url) as source:
            await source.fetch(digest, tmp_path / "a.partial", offset=0, on_bytes=on_bytes)
        return threading.get_ident()

    loop_thread = asyncio.run(fetch())
    assert (tmp_path / "a.partial").read_bytes() == blob
    assert threads == {loop_thread}


def test_threaded_a_cancelled_fetch_stops_its_thread_at_once_and_keeps_the_bytes(
    server: ArtifactServer, tmp_path: Path
) -> None:
    """A stalled download is cancelled (the module left the desired state,
    the agent stops): the worker's read is broken at once, not at its read
    timeout, and nothing is written after the cancellation returns."""
    blob, digest = _large_blob(server, 3 * WRITE_BYTES)
    cut = WRITE_BYTES + 1000
    server.stall_first_after = cut
    dest = tmp_path / "a.partial"
    sizes: list[int] = []

    async def cancel_midway() -> float:
        async with artifact_source("threaded", server.url) as source:
            task = asyncio.create_task(source.fetch(digest, dest, offset=0, on_bytes=sizes.append))
            while not sizes:  # one write done: the body stalls after it
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - started

    elapsed = asyncio.run(cancel_midway())
    assert elapsed < 2.0  # the read timeout is 5 s
    assert dest.read_bytes() == blob[:cut]  # every byte received, kept for the resume
    server.unstall.set()
    time.sleep(0.2)
    assert dest.stat().st_size == cut  # the thread is gone: nothing written since
    asyncio.run(_fetch(server.url, digest, dest, cut, "threaded"))
    assert dest.read_bytes() == blob
