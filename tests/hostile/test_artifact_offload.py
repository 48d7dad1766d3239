"""Artifact offload (`hub serve --artifact-offload`, issue #18) against the
requests it must refuse: a real hub authorises, a real nginx (configured by
`fogline hub nginx-config`) serves. Tampered, expired or borrowed
signatures, paths outside the artifacts, devices not allowed the release,
and, on the node's side, redirects the hub did not give.
"""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fogline.agent.updater import ArtifactFetchError, HttpArtifactSource
from fogline.artifact import generate_release_key, public_key_base64
from fogline.hub.releases import OFFLOAD_SECRET_FILE, sign_uri
from fogline.sim import OperatorClient, push_standin
from tests.support.device import TestDevice, enroll_device
from tests.support.nginx import Nginx, start_nginx
from tests.support.processes import HubProcess, free_port, start_hub, tls, wait_until


@dataclass
class Offload:
    hub: HubProcess
    nginx: Nginx
    digests: dict[str, str]  # "name@version" -> digest
    node: TestDevice  # allowed scoped@1.0.0
    stranger: TestDevice  # allowed nothing

    def secret(self) -> str:
        return (self.hub.data_dir / OFFLOAD_SECRET_FILE).read_text().strip()

    def signed(self, uri: str, expires: int | None = None) -> str:
        """`uri` signed with the hub's secret, as if the hub had done it."""
        expires = int(time.time()) + 60 if expires is None else expires
        md5 = sign_uri(uri, expires, self.secret())
        return f"{self.nginx.url}{uri}?md5={md5}&expires={expires}"

    def nginx_get(self, url: str, **kwargs: object) -> httpx.Response:
        return httpx.get(url, verify=tls(self.hub.ca), timeout=10, **kwargs)  # type: ignore[arg-type]


def _uri(digest: str) -> str:
    hexdigest = digest.removeprefix("sha256:")
    return f"/sha256/{hexdigest[:2]}/{hexdigest[2:]}"


@pytest.fixture(scope="module")
def offload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Offload]:
    root = tmp_path_factory.mktemp("offload-hostile")
    port = free_port()
    hub = start_hub(root / "hub", extra_args=["--artifact-offload", f"https://127.0.0.1:{port}"])
    nginx = start_nginx(hub.data_dir, root / "nginx", port)
    try:
        key = generate_release_key()
        hub.cli(
            "apply",
            "-f",
            "-",
            input_text=textwrap.dedent(f"""\
                apiVersion: fogline.dev/v1
                kind: ReleaseKey
                metadata: {{name: offload}}
                spec: {{publicKey: "{public_key_base64(key.public_key)}"}}
                """),
        )
        client = OperatorClient(hub.url, hub.token, hub.ca)
        try:
            digests = {
                f"{n}@{v}": push_standin(client, root, key, n, v)
                for n, v in (("scoped", "1.0.0"), ("other", "1.0.0"))
            }
        finally:
            client.close()
        node = enroll_device(hub, hub.create_claim(labels="scope=offload"), "off-node", root)
        stranger = enroll_device(hub, hub.create_claim(), "off-stranger", root)
        hub.cli(
            "apply",
            "-f",
            "-",
            input_text=textwrap.dedent("""\
                apiVersion: fogline.dev/v1
                kind: Deployment
                metadata: {name: offload}
                spec:
                  selector: {matchLabels: {scope: offload}}
                  modules: [{name: scoped, release: scoped@1.0.0}]
                """),
        )
        yield Offload(hub, nginx, digests, node, stranger)
    finally:
        nginx.stop()
        hub.stop()


def _redirect(offload: Offload, digest: str) -> str:
    """The URL the hub redirects the allowed node to, once its desired state names it."""

    def answer() -> httpx.Response | None:
        with offload.node.client() as api:
            response = api.get(f"/v1/artifacts/{digest}")
        return response if response.status_code == 307 else None

    response = wait_until(answer, 10, "the hub to redirect the node")
    assert response.headers["cache-control"] == "no-store"
    return str(response.headers["location"])


def test_an_allowed_device_is_sent_to_nginx_which_serves_the_archive_and_ranges(
    offload: Offload,
) -> None:
    digest = offload.digests["scoped@1.0.0"]
    url = _redirect(offload, digest)
    assert url.startswith(f"{offload.nginx.url}{_uri(digest)}?md5=")
    whole = offload.nginx_get(url)
    assert whole.status_code == 200
    assert "sha256:" + hashlib.sha256(whole.content).hexdigest() == digest
    rest = offload.nginx_get(url, headers={"range": "bytes=10-"})
    assert rest.status_code == 206 and rest.content == whole.content[10:]
    assert (
        rest.headers["content-range"] == f"bytes 10-{len(whole.content) - 1}/{len(whole.content)}"
    )
    assert (200, len(whole.content)) in offload.nginx.served(_uri(digest))
    # Operators are still served by the hub itself (their CLI follows no redirect).
    with offload.hub.client() as operator:
        assert operator.get(f"/v1/artifacts/{digest}").content == whole.content


def test_a_device_not_allowed_the_release_gets_404_from_the_hub_and_no_url(
    offload: Offload,
) -> None:
    for digest in (offload.digests["scoped@1.0.0"], offload.digests["other@1.0.0"]):
        with offload.stranger.client() as api:
            response = api.get(f"/v1/artifacts/{digest}")
        assert response.status_code == 404 and "location" not in response.headers
    with offload.node.client() as api:  # other@1.0.0 is not in its desired state
        response = api.get(f"/v1/artifacts/{offload.digests['other@1.0.0']}")
    assert response.status_code == 404 and "location" not in response.headers
    with httpx.Client(base_url=offload.hub.url, verify=tls(offload.hub.ca)) as anonymous:
        response = anonymous.get(f"/v1/artifacts/{offload.digests['scoped@1.0.0']}")
    assert response.status_code == 401 and "location" not in response.headers


def test_nginx_refuses_a_tampered_missing_or_expired_signature(offload: Offload) -> None:
    digest = offload.digests["scoped@1.0.0"]
    url = _redirect(offload, digest)
    md5 = url.split("md5=", 1)[1].split("&", 1)[0]
    tampered = url.replace(f"md5={md5}", f"md5={'A' if md5[0] != 'A' else 'B'}{md5[1:]}")
    assert offload.nginx_get(tampered).status_code == 403
    assert offload.nginx_get(url.split("?", 1)[0]).status_code == 403
    later = url.replace("expires=", "expires=9")  # a later expiry the signature does not cover
    assert offload.nginx_get(later).status_code == 403
    expired = offload.signed(_uri(digest), expires=int(time.time()) - 1)
    assert offload.nginx_get(expired).status_code == 403
    assert offload.nginx_get(offload.signed(_uri(digest))).status_code == 200  # the control


def test_a_signature_for_one_digest_does_not_open_another(offload: Offload) -> None:
    mine, other = offload.digests["scoped@1.0.0"], offload.digests["other@1.0.0"]
    url = _redirect(offload, mine)
    borrowed = url.replace(_uri(mine), _uri(other))
    assert borrowed != url
    assert offload.nginx_get(borrowed).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/sha256/",
        "/tmp/leak.part",
        "/sha256/../tmp/leak.part",
        "/sha256/%2e%2e/tmp/leak.part",
        "/sha256/ab/..%2f..%2ftmp%2fleak.part",
        "/../hub.db",
        "/deltas/",
    ],
)
def test_nothing_outside_the_digest_files_is_served_even_when_signed(
    offload: Offload, path: str
) -> None:
    leak = offload.hub.data_dir / "artifacts" / "tmp" / "leak.part"
    leak.parent.mkdir(parents=True, exist_ok=True)
    leak.write_bytes(b"half an upload")
    # Signed over the path as sent and as nginx normalises it: neither helps.
    for uri in (path, "/tmp/leak.part"):
        url = offload.signed(uri).replace(uri, path, 1)
        response = httpx.get(url, verify=tls(offload.hub.ca), timeout=10)
        assert response.status_code in (400, 403, 404), (path, response.status_code)
        assert b"half an upload" not in response.content


def test_the_node_resumes_a_download_through_nginx(offload: Offload, tmp_path: Path) -> None:
    digest = offload.digests["scoped@1.0.0"]
    _redirect(offload, digest)  # once the desired state names it
    with offload.hub.client() as operator:
        archive = operator.get(f"/v1/artifacts/{digest}").content
    dest = tmp_path / "partial"
    dest.write_bytes(archive[:1000])
    node, progress = offload.node, list[int]()

    async def resume() -> None:
        context = tls(offload.hub.ca, node.cert_path, node.key_path)
        async with httpx.AsyncClient(base_url=offload.hub.url, verify=context) as client:
            await HttpArtifactSource(client).fetch(
                digest, dest, offset=1000, on_bytes=progress.append
            )

    before = len(offload.nginx.served(_uri(digest)))
    asyncio.run(resume())
    assert dest.read_bytes() == archive and progress[-1] == len(archive)
    assert offload.nginx.served(_uri(digest))[before:] == [(206, len(archive) - 1000)]


# -- the node: which redirects it follows ------------------------------------------


def _node_fetch(tmp_path: Path, location: str, then: httpx.Response | None = None) -> list[str]:
    """A node fetching from a hub that answers 307 to `location` (a stand-in
    transport: the real hub never sends these); returns the URLs requested."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "hub.test":
            return httpx.Response(307, headers={"location": location})
        return then or httpx.Response(200, stream=httpx.ByteStream(b"bytes"))

    async def fetch() -> None:
        transport = httpx.MockTransport(handle)
        async with httpx.AsyncClient(base_url="https://hub.test", transport=transport) as client:
            source = HttpArtifactSource(client)
            await source.fetch("sha256:" + "a" * 64, tmp_path / "a", offset=0, on_bytes=print)

    asyncio.run(fetch())
    return seen


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:8444/sha256/aa/" + "a" * 62,
        "/sha256/aa/" + "a" * 62,
        "https://user:pw@cdn.test/sha256/aa",
        "ftp://cdn.test/x",
        "https://" + "a" * 3000 + ".test/",
        "",
    ],
)
def test_the_node_refuses_a_redirect_that_is_not_to_an_https_url(
    tmp_path: Path, location: str
) -> None:
    with pytest.raises(ArtifactFetchError) as caught:
        _node_fetch(tmp_path, location)
    assert caught.value.status == 307 and "refused redirect" in str(caught.value)
    assert not (tmp_path / "a").exists()


def test_the_node_follows_one_redirect_and_no_second(tmp_path: Path) -> None:
    seen = _node_fetch(tmp_path, "https://cdn.test/sha256/aa/x?md5=m&expires=1")
    assert seen[-1] == "https://cdn.test/sha256/aa/x?md5=m&expires=1"
    assert (tmp_path / "a").read_bytes() == b"bytes"
    again = httpx.Response(302, headers={"location": "https://elsewhere.test/x"})
    with pytest.raises(ArtifactFetchError, match="redirected again"):
        _node_fetch(tmp_path, "https://cdn.test/x", then=again)
