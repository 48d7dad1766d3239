"""The node's TUF client: python-tuf's ngclient over the node's mTLS hub link.

Before the updater downloads a release it asks `TargetTrust.lookup` for the
release's target (`<name>/<version>`); ngclient refreshes root, timestamp,
snapshot and targets from the hub (`/v1/tuf/metadata/`), verifies all of it
against the root pinned at enrollment, walks the delegation to the module's
role, and answers with the length and sha256 that a threshold of the
module's release keys signed. The updater then fetches at most that many
bytes and installs them only if their sha256 is that one.

ngclient is synchronous (`_tuf_client`, imported at the first lookup):
each lookup runs in a worker thread, and its fetcher (`HubFetcher`) hands
every request back to the event loop that owns the node's httpx client, so
metadata travels over the same mTLS connection pool (and, in the simulator,
the same fault-injecting transport) as the rest.
The metadata ngclient has accepted stays in DIR/tuf/metadata, so a hub that
later serves older versions (rollback) is refused across restarts.
"""

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import httpx

PINNED_ROOT_FILE: Final = "tuf-root.json"


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
        # python-tuf (with securesystemslib and urllib3) is imported at the
        # first lookup, when an update comes: an idle agent never needs it.
        from ._tuf_client import target_info

        with self._lock:
            return target_info(
                self._pinned_root, self._dir, self._base_url, self._http, loop, name, version
            )


def node_target_trust(
    identity_dir: Path, state_dir: Path, http: httpx.AsyncClient
) -> TufTargetTrust | None:
    """The node's TUF trust when a root is pinned (IDENTITY/tuf-root.json, from
    enrollment or placed there by hand), else None: the release keys decide."""
    pinned = identity_dir / PINNED_ROOT_FILE
    if not pinned.exists():
        return None
    return TufTargetTrust(pinned, state_dir / "tuf" / "metadata", http, path="/v1/tuf/metadata/")
