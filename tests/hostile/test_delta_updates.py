"""The delta route (`GET /v1/artifacts/{digest}/delta?from=BASE`) against
callers it must refuse: a device not allowed the target, malformed or
foreign `from` values. And what it must give: bytes that rebuild exactly the
target, gone with the release. Real hub processes, real releases.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fogline.artifact._delta import apply_delta
from tests.support.device import TestDevice, enroll_device
from tests.support.processes import HubProcess, start_hub


@dataclass
class Pushed:
    hub: HubProcess
    archives: dict[str, Path]  # "name@version" -> archive
    device: TestDevice

    def digest(self, ref: str) -> str:
        return "sha256:" + hashlib.sha256(self.archives[ref].read_bytes()).hexdigest()


def _push(hub: HubProcess, work: Path, key: Path, name: str, version: str) -> Path:
    source = work / f"{name}-{version}"
    source.mkdir()
    (source / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    settings = {f"key{i}": i for i in range(5000)} | {"version": version}
    (source / "settings.json").write_text(json.dumps(settings))
    archive = work / f"{name}-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))
    return archive


_ALL = (("conf", "1.0.0"), ("conf", "1.1.0"), ("conf", "1.2.0"), ("other", "1.0.0"))


def _fleet(
    root: Path, extra_args: list[str] | None = None, refs: tuple[tuple[str, str], ...] = _ALL
) -> tuple[HubProcess, Pushed]:
    hub = start_hub(root / "hub", extra_args=extra_args)
    keys = root / "keys"
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "ci", "--dir", str(keys)).stdout
    )
    archives = {f"{n}@{v}": _push(hub, root, keys / "ci.key", n, v) for n, v in refs}
    device = enroll_device(hub, hub.create_claim(), "dev-1", root)
    return hub, Pushed(hub, archives, device)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    hub, fleet = _fleet(tmp_path_factory.mktemp("delta-hostile"))
    try:
        yield fleet
    finally:
        hub.stop()


def _delta_url(pushed: Pushed, target: str, base: str) -> str:
    return f"/v1/artifacts/{pushed.digest(target)}/delta?from={base}"


def test_an_operator_gets_a_delta_that_rebuilds_the_target_exactly(pushed: Pushed) -> None:
    with pushed.hub.client() as client:
        response = client.get(_delta_url(pushed, "conf@1.1.0", pushed.digest("conf@1.0.0")))
    assert response.status_code == 200, response.text
    target = pushed.archives["conf@1.1.0"].read_bytes()
    assert len(response.content) < len(target) / 2
    rebuilt = apply_delta(pushed.archives["conf@1.0.0"].read_bytes(), response.content)
    assert rebuilt == target


def test_a_device_not_sent_the_target_gets_no_delta_of_it(pushed: Pushed) -> None:
    with pushed.device.client() as client:
        response = client.get(_delta_url(pushed, "conf@1.1.0", pushed.digest("conf@1.0.0")))
        full = client.get(f"/v1/artifacts/{pushed.digest('conf@1.1.0')}")
    # Exactly as for the full archive: as if it did not exist.
    assert response.status_code == full.status_code == 404


@pytest.mark.parametrize(
    "base",
    ["../../etc/passwd", "sha256:" + "A" * 64, "sha256:abc", "md5:" + "0" * 32, "x" * 150],
)
def test_a_malformed_from_is_refused_naming_the_field(pushed: Pushed, base: str) -> None:
    with pushed.hub.client() as client:
        response = client.get(
            f"/v1/artifacts/{pushed.digest('conf@1.1.0')}/delta", params={"from": base}
        )
    assert response.status_code == 422, response.text
    assert "from" in response.text


def test_a_missing_or_oversized_from_is_refused(pushed: Pushed) -> None:
    with pushed.hub.client() as client:
        missing = client.get(f"/v1/artifacts/{pushed.digest('conf@1.1.0')}/delta")
        huge = client.get(
            f"/v1/artifacts/{pushed.digest('conf@1.1.0')}/delta", params={"from": "s" * 5000}
        )
    assert missing.status_code == 422 and "from" in missing.text
    assert huge.status_code == 422 and "from" in huge.text


def test_a_base_of_another_module_unknown_or_the_target_itself_gets_404(pushed: Pushed) -> None:
    with pushed.hub.client() as client:
        for base in (
            pushed.digest("other@1.0.0"),  # another module: a delta would mix releases
            "sha256:" + "0" * 64,  # nothing the hub stores
            pushed.digest("conf@1.1.0"),  # itself
        ):
            response = client.get(_delta_url(pushed, "conf@1.1.0", base))
            assert response.status_code == 404, (base, response.text)


def test_removing_a_release_removes_its_deltas(pushed: Pushed) -> None:
    with pushed.hub.client() as client:
        url = _delta_url(pushed, "conf@1.2.0", pushed.digest("conf@1.1.0"))
        assert client.get(url).status_code == 200
        hexdigest = pushed.digest("conf@1.2.0").removeprefix("sha256:")
        deltas = pushed.hub.data_dir / "artifacts" / "deltas"
        assert list((deltas / hexdigest).iterdir())
        assert client.delete("/v1/releases/conf/1.2.0").status_code == 200
        assert not (deltas / hexdigest).exists()
        assert client.get(url).status_code == 404


def test_a_hub_with_deltas_off_answers_404(tmp_path: Path) -> None:
    hub, fleet = _fleet(tmp_path, ["--no-deltas"], (("conf", "1.0.0"), ("conf", "1.1.0")))
    try:
        with hub.client() as client:
            url = _delta_url(fleet, "conf@1.1.0", fleet.digest("conf@1.0.0"))
            assert client.get(url).status_code == 404
            assert client.get(f"/v1/artifacts/{fleet.digest('conf@1.1.0')}").status_code == 200
    finally:
        hub.stop()
