"""A device's artifact download on a hub that offloads downloads, answered by
the device hot path: the 307 to a signed nginx URL only for an enrolled,
unrevoked device whose desired state names the release; anything else as
before (404 for what it may not fetch, 422 for a malformed digest, 403 when
revoked), and operators still get the bytes from the hub."""

from pathlib import Path

from tests.support.device import enroll_device
from tests.support.modules import deployment, push_calibrated_releases
from tests.support.processes import free_port, start_hub


def test_offloaded_downloads_are_authorised_on_every_request(tmp_path: Path) -> None:
    nginx_port = free_port()  # nothing listens: the hub only signs the redirect
    hub = start_hub(
        tmp_path / "hub", extra_args=["--artifact-offload", f"https://127.0.0.1:{nginx_port}"]
    )
    try:
        digests = push_calibrated_releases(hub, tmp_path, ("1.0.0", "2.0.0"), free_port())
        device = enroll_device(hub, hub.create_claim(), "dl-1", tmp_path)
        wanted, other = digests["1.0.0"], digests["2.0.0"]
        with device.client() as client:
            # Nothing in its desired state yet: as if the artifact did not exist.
            assert client.get(f"/v1/artifacts/{wanted}").status_code == 404
            manifest = tmp_path / "web.yaml"
            manifest.write_text(deployment("1.0.0"))
            hub.cli("apply", "-f", str(manifest))

            answer = client.get(f"/v1/artifacts/{wanted}")
            assert answer.status_code == 307, answer.text
            hexdigest = wanted.removeprefix("sha256:")
            location = answer.headers["location"]
            assert location.startswith(
                f"https://127.0.0.1:{nginx_port}/sha256/{hexdigest[:2]}/{hexdigest[2:]}?"
            )
            assert answer.headers["cache-control"] == "no-store"
            # A release its desired state does not name, a malformed digest.
            assert client.get(f"/v1/artifacts/{other}").status_code == 404
            malformed = client.get("/v1/artifacts/sha256:..%2F..%2Fhub.db")
            assert malformed.status_code in (404, 422), malformed.text
            assert client.get("/v1/artifacts/sha256:abc").status_code == 422

            # Operators are served the bytes by the hub itself.
            with hub.client() as operator:
                served = operator.get(f"/v1/artifacts/{wanted}")
                assert served.status_code == 200
                assert served.content == (tmp_path / "web-1.0.0.tar.zst").read_bytes()

            # Revoked, on the same connection: refused at the next request.
            hub.cli("devices", "revoke", "dl-1")
            refused = client.get(f"/v1/artifacts/{wanted}")
            assert refused.status_code == 403, refused.text
            assert "revoked" in refused.json()["message"]
    finally:
        hub.stop()
