"""A hub with a TUF repository, set up as an operator does with the CLI.

`tuf_repository` runs the offline ceremony (`tuf online-key`, `tuf init`,
`tuf delegate`, `tuf push`) for one module; `tuf_release` builds, signs
(`release sign --tuf`) and pushes one version of the test `web` module.
`TufReader` reads the hub's metadata with python-tuf's ngclient over a
device's client certificate, as a node does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater

from .device import TestDevice
from .modules import write_module
from .processes import HubProcess


@dataclass(frozen=True)
class TufRepo:
    offline: Path  # the offline directory (root keys, root and targets)
    keys: Path  # where the release keys are (NAME.key, NAME.pub)


def release_key(hub: HubProcess, keys: Path, name: str) -> Path:
    """A new release key, applied as a ReleaseKey (the hub's push check); its .key."""
    created = hub.cli("keys", "create", name, "--dir", str(keys))
    hub.cli("apply", "-f", "-", input_text=created.stdout)
    return keys / f"{name}.key"


def tuf_repository(
    hub: HubProcess,
    work: Path,
    *,
    module: str = "web",
    release_keys: tuple[str, ...] = ("rel",),
    threshold: int = 1,
    root_keys: int = 3,
    root_threshold: int = 2,
) -> TufRepo:
    """Initialise the hub's TUF repository and delegate `module` to new release keys."""
    work.mkdir(parents=True, exist_ok=True)
    keys = work / "keys"
    online = work / "online.json"
    online.write_text(hub.cli("tuf", "online-key").stdout)
    offline = work / "offline"
    hub.cli(
        "tuf", "init", "--dir", str(offline), "--keys", str(root_keys),
        "--threshold", str(root_threshold), "--online-key", str(online),
    )  # fmt: skip
    for name in release_keys:
        release_key(hub, keys, name)
    delegate(hub, offline, module, [keys / f"{n}.pub" for n in release_keys], threshold)
    return TufRepo(offline, keys)


def delegate(
    hub: HubProcess, offline: Path, module: str, pubs: list[Path], threshold: int = 1
) -> None:
    args = ["tuf", "delegate", "--dir", str(offline), "--module", module]
    for pub in pubs:
        args += ["--key", str(pub)]
    hub.cli(*args, "--threshold", str(threshold))
    hub.cli("tuf", "push", "--dir", str(offline))


def tuf_release(
    hub: HubProcess,
    work: Path,
    keys: list[Path],
    version: str,
    port: int,
    *,
    tuf: bool = True,
    push: bool = True,
    **kwargs: object,
) -> Path:
    """Build `web` `version`, sign it with each of `keys` (TUF role too), push it."""
    source = write_module(work / f"src-{version}", version, port, **kwargs)  # type: ignore[arg-type]
    archive = work / f"web-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    for key in keys:
        hub.cli("release", "sign", str(archive), "--key", str(key), *(["--tuf"] if tuf else []))
    if push:
        hub.cli("release", "push", str(archive))
    return archive


class _DeviceFetcher(FetcherInterface):
    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = self._client.get(url)
        if response.status_code != 200:
            raise DownloadHTTPError(f"{url}: {response.status_code}", response.status_code)
        return iter((response.content,))


def tuf_targetinfo(
    device: TestDevice, root: bytes, metadata_dir: Path, path: str
) -> TargetFile | None:
    """What ngclient, trusting `root`, finds for `path` over the device's mTLS."""
    metadata_dir.mkdir(parents=True, exist_ok=True)
    with device.client() as client:
        updater = Updater(
            metadata_dir=str(metadata_dir),
            metadata_base_url=f"{device.hub.url}/v1/tuf/metadata/",
            fetcher=_DeviceFetcher(client),
            bootstrap=root,
        )
        updater.refresh()
        return updater.get_targetinfo(path)
