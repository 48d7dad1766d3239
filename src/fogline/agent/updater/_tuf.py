"""The node's TUF client: python-tuf's ngclient over the node's mTLS hub link.

Before the updater downloads a release it asks `TargetTrust.lookup` for the
release's target (`<name>/<version>`); ngclient refreshes root, timestamp,
snapshot and targets from the hub (`/v1/tuf/metadata/`), verifies all of it
against the root pinned at enrollment, walks the delegation to the module's
role, and answers with the length and sha256 that a threshold of the
module's release keys signed. The updater then fetches at most that many
bytes and installs them only if their sha256 is that one.

ngclient is synchronous: each lookup runs in a worker thread, and its
fetcher (`HubFetcher`) hands every request back to the event loop that owns
the node's httpx client, so metadata travels over the same mTLS connection
pool (and, in the simulator, the same fault-injecting transport) as the rest.
The metadata ngclient has accepted stays in DIR/tuf/metadata, so a hub that
later serves older versions (rollback) is refused across restarts.
"""

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import httpx
from tuf.api.exceptions import (
    DownloadError,
    DownloadHTTPError,
    DownloadLengthMismatchError,
    RepositoryError,
)
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from fogline.tuf import target_path

from ._errors import TufRefusedError

PINNED_ROOT_FILE: Final = "tuf-root.json"
# Generous bounds for one metadata file and one request over the hub link.
_MAX_METADATA_BYTES: Final = 4 * 1024 * 1024
_REQUEST_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class TrustedTarget:
    """What TUF metadata says a release is: its length and digest."""

    length: int
    digest: str  # sha256:<hex>


class TargetTrust(Protocol):
    """Answers which bytes a release must be, before anything is downloaded."""

    async def lookup(self, name: str, version: str) -> TrustedTarget:
        """The length and digest signed for `name` `version`.

        Raises:
            TufRefusedError: not listed, or the metadata did not verify.
        """
        ...


class HubFetcher(FetcherInterface):
    """ngclient's fetcher over the node's async httpx client (its mTLS link),
    called from a worker thread while `loop` runs the client.

    Endless data: ngclient asks for each metadata file with the most bytes
    it may have (the length the trusted metadata states, or its bound for
    the role: 16 KiB for a timestamp); reading stops there, so a hub that
    serves more never gets more than that into the node's memory.
    """

    def __init__(self, http: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self._http = http
        self._loop = loop

    def _fetch(self, url: str) -> Iterator[bytes]:
        return iter((self._read(url, _MAX_METADATA_BYTES),))

    def download_bytes(self, url: str, max_length: int) -> bytes:
        """See FetcherInterface.download_bytes: at most `max_length` bytes are read."""
        try:
            return self._read(url, min(max_length, _MAX_METADATA_BYTES))
        except DownloadError:
            raise
        except Exception as exc:  # as FetcherInterface.fetch: every failure a DownloadError
            raise DownloadError(f"Failed to download {url}") from exc

    def _read(self, url: str, max_bytes: int) -> bytes:
        future = asyncio.run_coroutine_threadsafe(self._get(url, max_bytes), self._loop)
        status, body = future.result(timeout=_REQUEST_TIMEOUT_S + 5)
        if status != 200:
            raise DownloadHTTPError(f"{url}: HTTP {status}", status)
        return body

    async def _get(self, url: str, max_bytes: int) -> tuple[int, bytes]:
        async with asyncio.timeout(_REQUEST_TIMEOUT_S):
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    return response.status_code, b""
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        # Checked before the chunk is kept; leaving the stream
                        # closes the connection, so nothing more is read.
                        raise DownloadLengthMismatchError(
                            f"{url}: more than the {max_bytes} bytes it may have; "
                            "stopped reading there"
                        )
                    chunks.append(chunk)
                return 200, b"".join(chunks)


class TufTargetTrust:
    """`TargetTrust` through ngclient, trusting the root pinned in `pinned_root`.

    Lookups are serialised: ngclient keeps its accepted metadata in one directory.
    """

    def __init__(
        self, pinned_root: Path, metadata_dir: Path, http: httpx.AsyncClient, *, path: str
    ) -> None:
        self._pinned_root = pinned_root
        self._dir = metadata_dir
        self._http = http
        self._base_url = str(http.base_url.join(path))
        self._lock = threading.Lock()

    async def lookup(self, name: str, version: str) -> TrustedTarget:
        """See TargetTrust.lookup."""
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._lookup, loop, name, version)

    def _lookup(self, loop: asyncio.AbstractEventLoop, name: str, version: str) -> TrustedTarget:
        path = target_path(name, version)
        with self._lock:
            try:
                self._dir.mkdir(parents=True, exist_ok=True)
                updater = Updater(
                    metadata_dir=str(self._dir),
                    metadata_base_url=self._base_url,
                    fetcher=HubFetcher(self._http, loop),
                    config=UpdaterConfig(max_root_rotations=64),
                    bootstrap=self._pinned_root.read_bytes(),
                )
                updater.refresh()
                info = updater.get_targetinfo(path)
            except RepositoryError as exc:
                raise TufRefusedError(path, f"{type(exc).__name__}: {exc}") from None
            except DownloadError as exc:
                raise TufRefusedError(path, f"metadata unavailable: {exc}") from None
            except OSError as exc:
                raise TufRefusedError(path, f"metadata directory: {exc}") from None
        if info is None:
            raise TufRefusedError(
                path, "not in the TUF metadata (no delegated release key signed it)"
            )
        sha256 = info.hashes.get("sha256")
        if sha256 is None:
            raise TufRefusedError(path, "its TUF metadata has no sha256")
        return TrustedTarget(info.length, f"sha256:{sha256}")


def node_target_trust(
    identity_dir: Path, state_dir: Path, http: httpx.AsyncClient
) -> TufTargetTrust | None:
    """The node's TUF trust when a root is pinned (IDENTITY/tuf-root.json, from
    enrollment or placed there by hand), else None: the release keys decide."""
    pinned = identity_dir / PINNED_ROOT_FILE
    if not pinned.exists():
        return None
    return TufTargetTrust(pinned, state_dir / "tuf" / "metadata", http, path="/v1/tuf/metadata/")
