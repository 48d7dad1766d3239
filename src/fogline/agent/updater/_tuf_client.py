"""The node's python-tuf calls: ngclient and its fetcher over the hub link.

Apart from `_tuf` so that the agent imports python-tuf (with
securesystemslib and urllib3) only when an update comes; see `_tuf`.
"""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Final

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
from ._tuf import TrustedTarget

# Generous bounds for one metadata file and one request over the hub link.
_MAX_METADATA_BYTES: Final = 4 * 1024 * 1024
_REQUEST_TIMEOUT_S: Final = 30.0


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


def target_info(
    pinned_root: Path,
    metadata_dir: Path,
    base_url: str,
    http: httpx.AsyncClient,
    loop: asyncio.AbstractEventLoop,
    name: str,
    version: str,
) -> TrustedTarget:
    """Refresh the metadata trusting `pinned_root` and answer for `name` `version`
    (see `TargetTrust.lookup`); the caller serialises calls per `metadata_dir`.

    Raises:
        TufRefusedError: not listed, or the metadata did not verify.
    """
    path = target_path(name, version)
    try:
        metadata_dir.mkdir(parents=True, exist_ok=True)
        updater = Updater(
            metadata_dir=str(metadata_dir),
            metadata_base_url=base_url,
            fetcher=HubFetcher(http, loop),
            config=UpdaterConfig(max_root_rotations=64),
            bootstrap=pinned_root.read_bytes(),
        )
        updater.refresh()
        info = updater.get_targetinfo(path)
    except RepositoryError as exc:
        raise TufRefusedError(path, f"{type(exc).__name__}: {exc}") from None
    except DownloadError as exc:
        # The fetcher's DownloadError says which URL; its cause says why
        # (a timeout, a refused connection, the hub's status).
        cause = exc.__cause__
        why = f" ({type(cause).__name__}: {str(cause)[:200]})" if cause is not None else ""
        raise TufRefusedError(path, f"metadata unavailable: {exc}{why}") from None
    except OSError as exc:
        raise TufRefusedError(path, f"metadata directory: {exc}") from None
    if info is None:
        raise TufRefusedError(path, "not in the TUF metadata (no delegated release key signed it)")
    sha256 = info.hashes.get("sha256")
    if sha256 is None:
        raise TufRefusedError(path, "its TUF metadata has no sha256")
    return TrustedTarget(info.length, f"sha256:{sha256}")
