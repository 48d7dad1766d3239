"""A device sees only what is meant for it (issue #12), against real hub processes.

Each test is an attack the hostile review made: a device choosing its own
targeting labels, fetching releases meant for others, enrolling again after
revocation, listing or squatting device names, racing for one name.
"""

from __future__ import annotations

import datetime as dt
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.artifact import generate_release_key, public_key_base64
from fogline.sim import OperatorClient, push_standin
from tests.support.device import FACTS, enroll_body, enroll_device
from tests.support.device import TestDevice as EnrolledDevice
from tests.support.processes import HubProcess, start_hub, tls, wait_until

CLAIM_REFUSED = {
    "error": "forbidden",
    "message": "claim refused: unknown, revoked, expired or used up",
    "details": [
        {"field": "claim", "reason": "claim refused: unknown, revoked, expired or used up"}
    ],
}


def _enroll(hub: HubProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{hub.url}/v1/enroll", json=body, verify=tls(hub.ca), timeout=30)


def _claim(hub: HubProcess, **spec: Any) -> str:
    with hub.client() as client:
        response = client.post("/v1/claims", json={"max_uses": 5, **spec})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def _claim_id(token: str) -> str:
    return token.split("_", 1)[1].split(".", 1)[0]


def _apply(hub: HubProcess, text: str) -> dict[str, Any]:
    with hub.client() as client:
        response = client.post(
            "/v1/manifests/apply", json={"files": [{"name": "test.yaml", "text": text}]}
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _deployment(name: str, selector: str, *, priority: int = 0, spec: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          selector: {selector}
          priority: {priority}
        """) + textwrap.indent(textwrap.dedent(spec).rstrip("\n") + "\n", "  ")


def _desired(device: EnrolledDevice) -> dict[str, Any]:
    with device.client() as client:
        response = client.get("/v1/desired")
    assert response.status_code == 200, response.text
    return dict(response.json()["document"])


def _audit(hub: HubProcess, action: str) -> list[dict[str, Any]]:
    with hub.client() as client:
        rows = client.get("/v1/audit").json()
    return [row for row in rows if row["action"] == action]


# -- targeting labels come from the claim and from operators ------------------------------


def test_labels_a_device_reports_do_not_select_it_until_an_operator_promotes_them(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    claim = _claim(hub, labels={"scope": "promote"})
    device = enroll_device(hub, claim, "wants-gold", tmp_path, labels={"tier": "gold"})
    with device.client() as client:
        report = client.post("/v1/report", json={"facts": FACTS, "labels": {"tier": "gold"}})
    assert report.status_code == 200, report.text
    _apply(
        hub,
        _deployment("promote-base", "{matchLabels: {scope: promote}}", spec="config: {base: 1}")
        + "---\n"
        + _deployment(
            "promote-gold",
            "{matchLabels: {scope: promote, tier: gold}}",
            priority=10,
            spec="config: {secret: s3cr3t}",
        ),
    )

    document = _desired(device)
    assert document["config"] == {"base": 1}  # the gold deployment did not select it
    shown = hub.device("wants-gold")
    assert "tier" not in shown["labels"] and shown["labels"]["scope"] == "promote"
    assert shown["reported_labels"] == {"tier": "gold"}
    text = hub.cli("devices", "show", "wants-gold", "-o", "table").stdout
    assert "tier=gold" in text and "not used for targeting" in text

    hub.cli("devices", "promote", "wants-gold", "tier")

    assert _desired(device)["config"] == {"base": 1, "secret": "s3cr3t"}
    assert hub.device("wants-gold")["labels"]["tier"] == "gold"
    (entry,) = [e for e in _audit(hub, "device.promote") if e["target"] == "wants-gold"]
    assert entry["detail"]["promoted"] == {"tier": "gold"} and entry["actor"] == "admin"
    refused = hub.cli("devices", "promote", "wants-gold", "never-asked", check=False)
    assert refused.returncode == 1 and "did not ask for" in refused.stderr


def test_keys_under_the_hub_prefix_are_refused_wherever_labels_come_in(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    device = enroll_device(hub, _claim(hub), "prefix-probe", tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    hub_owned = {"fogline.dev/arch": "arm64"}
    with hub.client() as client:
        cases = [
            (client.post("/v1/claims", json={"labels": hub_owned}), "body.labels"),
            (
                client.patch("/v1/devices/prefix-probe/labels", json={"set": hub_owned}),
                "body.set",
            ),
            (
                client.patch(
                    "/v1/devices/prefix-probe/labels", json={"remove": ["fogline.dev/os"]}
                ),
                "body.remove.0",
            ),
        ]
    body = enroll_body(_claim(hub), "prefix-enroll", key, labels=hub_owned)
    cases.append((_enroll(hub, body), "body.labels"))
    with device.client() as client:
        report = client.post("/v1/report", json={"facts": FACTS, "labels": hub_owned})
    cases.append((report, "body.labels"))
    for response, field in cases:
        assert response.status_code == 422, response.text
        assert response.json()["details"][0]["field"] == field
        assert "belong to the hub" in response.json()["details"][0]["reason"]

    manifest = textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: ProvisioningClaim
        metadata: {name: prefixed}
        spec: {labels: {fogline.dev/os: linux}, maxUses: 1, expires: 1h}
        """)
    with hub.client() as client:
        response = client.post(
            "/v1/manifests/apply", json={"files": [{"name": "claim.yaml", "text": manifest}]}
        )
    assert response.status_code == 422
    assert response.json()["details"][0]["field"].endswith('spec.labels["fogline.dev/os"]')
    cli = hub.cli("claim", "create", "--labels", "fogline.dev/os=linux", check=False)
    assert cli.returncode != 0 and "belong to the hub" in cli.stderr


def test_platform_labels_are_taken_at_enrollment_and_reports_do_not_move_them(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    pi = {**FACTS, "os": "linux", "arch": "aarch64"}  # a Raspberry Pi 4
    device = enroll_device(hub, _claim(hub, labels={"scope": "arch"}), "pi4", tmp_path, facts=pi)
    _apply(
        hub,
        _deployment(
            "arch-arm64",
            "{matchLabels: {scope: arch}, matchExpressions: "
            "[{key: fogline.dev/arch, operator: In, values: [arm64]}]}",
            spec="config: {image: arm64}",
        ),
    )
    assert hub.device("pi4")["labels"]["fogline.dev/arch"] == "arm64"
    assert _desired(device)["config"] == {"image": "arm64"}

    with device.client() as client:
        moved = {**pi, "arch": "x86_64", "os": "windows"}
        assert client.post("/v1/report", json={"facts": moved}).status_code == 200

    shown = hub.device("pi4")
    assert shown["arch"] == "x86_64"  # the fact is shown as reported...
    assert shown["labels"]["fogline.dev/arch"] == "arm64"  # ...the label stays as enrolled
    assert shown["labels"]["fogline.dev/os"] == "linux"
    assert _desired(device)["config"] == {"image": "arm64"}


# -- a device fetches only the releases its desired state names ---------------------------


def _absent_release(name: str, version: str) -> dict[str, Any]:
    return {
        "error": "not_found",
        "message": f"no release {name!r} version {version!r}",
        "details": [],
    }


def _absent_artifact(digest: str) -> dict[str, Any]:
    return {"error": "not_found", "message": f"no artifact {digest}", "details": []}


def test_a_device_fetches_only_releases_its_current_or_previous_state_names(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    key = generate_release_key()
    _apply(
        hub,
        textwrap.dedent(f"""\
            apiVersion: fogline.dev/v1
            kind: ReleaseKey
            metadata: {{name: scope-test}}
            spec: {{publicKey: "{public_key_base64(key.public_key)}"}}
            """),
    )
    client = OperatorClient(hub.url, hub.token, hub.ca)
    try:
        digests = {
            (name, version): push_standin(client, tmp_path, key, name, version)
            for name, version in (
                ("scoped", "1.0.0"),
                ("scoped", "2.0.0"),
                ("scoped", "3.0.0"),
                ("other", "1.0.0"),
            )
        }
    finally:
        client.close()
    node = enroll_device(hub, _claim(hub, labels={"scope": "rel"}), "rel-node", tmp_path)
    stranger = enroll_device(hub, _claim(hub), "rel-stranger", tmp_path)
    never_pushed = "sha256:" + "e" * 64

    def visible(device: EnrolledDevice) -> set[tuple[str, str]]:
        """Which releases the device can read and download, checking that every
        hidden one answers exactly as one that does not exist."""
        seen = set()
        with device.client() as api:
            assert api.get(f"/v1/artifacts/{never_pushed}").json() == _absent_artifact(never_pushed)
            assert api.get("/v1/releases/nope/9.9.9").json() == _absent_release("nope", "9.9.9")
            for (name, version), digest in digests.items():
                release = api.get(f"/v1/releases/{name}/{version}")
                artifact = api.get(f"/v1/artifacts/{digest}", headers={"range": "bytes=10-"})
                if release.status_code == 200:
                    assert artifact.status_code == 206, artifact.text
                    seen.add((name, version))
                    continue
                assert release.status_code == artifact.status_code == 404
                assert release.json() == _absent_release(name, version)
                assert artifact.json() == _absent_artifact(digest)
        return seen

    def roll_to(version: str) -> None:
        _apply(
            hub,
            _deployment(
                "rel-scoped",
                "{matchLabels: {scope: rel}}",
                spec=f"modules: [{{name: scoped, release: scoped@{version}}}]",
            ),
        )
        wait_until(
            lambda: any(m["version"] == version for m in _desired(node).get("modules", [])),
            10,
            f"rel-node served scoped@{version}",
        )

    assert visible(node) == visible(stranger) == set()  # nothing is meant for them yet
    roll_to("1.0.0")
    assert visible(node) == {("scoped", "1.0.0")}
    roll_to("2.0.0")  # in the middle of an update, or of a rollback: both
    assert visible(node) == {("scoped", "1.0.0"), ("scoped", "2.0.0")}
    roll_to("3.0.0")
    assert visible(node) == {("scoped", "2.0.0"), ("scoped", "3.0.0")}
    assert visible(stranger) == set()
    with hub.client() as operator:  # operators read every release
        for (name, version), digest in digests.items():
            assert operator.get(f"/v1/releases/{name}/{version}").status_code == 200
            assert operator.get(f"/v1/artifacts/{digest}").status_code == 200


# -- revocation sticks ---------------------------------------------------------------------


def test_a_revoked_key_never_enrolls_again_not_under_a_new_name_nor_after_rm(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    claim = _claim(hub, max_uses=10)
    key = ec.generate_private_key(ec.SECP256R1())
    enroll_device(hub, claim, "revoked-a", tmp_path, key=key)
    hub.cli("devices", "revoke", "revoked-a")

    for name in ("revoked-b", "revoked-a"):
        response = _enroll(hub, enroll_body(claim, name, key))
        assert response.status_code == 403, response.text
        assert response.json()["details"][0]["field"] == "csr"
        assert "revoked" in response.json()["message"]
    hub.cli("devices", "rm", "revoked-a")
    for name in ("revoked-a", "revoked-c"):  # the row is gone; the key stays refused
        response = _enroll(hub, enroll_body(claim, name, key))
        assert response.status_code == 403 and "revoked" in response.json()["message"]
    assert _audit(hub, "device.revoke")[-1]["target"] == "revoked-a"
    # The name itself is free again, for another key.
    enroll_device(hub, claim, "revoked-a", tmp_path)


def test_a_retried_enrollment_needs_a_claim_that_is_still_valid(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    key = ec.generate_private_key(ec.SECP256R1())
    used_up = _claim(hub, max_uses=1)
    body = enroll_body(used_up, "retrier", key)
    first = _enroll(hub, body)
    assert first.status_code == 200, first.text
    # The answer was lost: the same key and claim again. The claim is used
    # up by this very device, and the retry takes no second use.
    again = _enroll(hub, body)
    assert again.status_code == 200 and again.json()["device_id"] == first.json()["device_id"]

    short = _claim(hub, max_uses=1, expires_in_s=1.0)
    late_body = enroll_body(short, "late-retrier", ec.generate_private_key(ec.SECP256R1()))
    assert _enroll(hub, late_body).status_code == 200
    hub.cli("claim", "revoke", _claim_id(short))
    hub.cli("claim", "revoke", _claim_id(used_up))
    with hub.client() as client:
        claims = {c["id"]: c for c in client.get("/v1/claims").json()}
    expires_at = dt.datetime.fromisoformat(claims[_claim_id(short)]["expires_at"])
    wait_until(lambda: dt.datetime.now(dt.UTC) > expires_at, 5, "the short claim to expire")
    for retried in (body, late_body):  # revoked; revoked and expired
        response = _enroll(hub, retried)
        assert (response.status_code, response.json()) == (403, CLAIM_REFUSED)


# -- names: no enumeration, no squatting -------------------------------------------------------


def test_every_claim_failure_reads_the_same_whatever_the_name(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    enroll_device(hub, _claim(hub), "known-name", tmp_path)
    revoked = _claim(hub)
    hub.cli("claim", "revoke", _claim_id(revoked))
    used_up = _claim(hub, max_uses=1)
    enroll_device(hub, used_up, "uses-it-up", tmp_path)
    bound = _claim(hub, names=["plant9-*"])
    claims = {
        "made-up": "fgc_aaaaaaaaaaaa." + "b" * 43,
        "garbage": "garbage",
        "wrong-secret": revoked.rsplit(".", 1)[0] + "." + "c" * 43,
        "revoked": revoked,
        "used-up": used_up,
        "outside-its-names": bound,
    }
    key = ec.generate_private_key(ec.SECP256R1())
    answers = {}
    for label, claim in claims.items():
        for name in ("known-name", "unknown-name"):
            response = _enroll(hub, enroll_body(claim, name, key))
            answers[(label, name)] = (response.status_code, response.content)
    assert len(set(answers.values())) == 1, answers
    status, content = next(iter(answers.values()))
    assert status == 403 and httpx.Response(403, content=content).json() == CLAIM_REFUSED


def test_a_claim_binds_the_names_it_may_enroll(shared_hub: HubProcess, tmp_path: Path) -> None:
    hub = shared_hub
    token = hub.cli("claim", "create", "--names", "plant7-*", "--max-uses", "3").stdout.strip()
    key = ec.generate_private_key(ec.SECP256R1())
    outside = _enroll(hub, enroll_body(token, "plant8-press", key))
    assert (outside.status_code, outside.json()) == (403, CLAIM_REFUSED)
    assert _enroll(hub, enroll_body(token, "plant7-press", key)).status_code == 200
    listed = hub.cli("claim", "ls", "-o", "table").stdout
    assert "plant7-*" in listed

    applied = _apply(
        hub,
        textwrap.dedent("""\
            apiVersion: fogline.dev/v1
            kind: ProvisioningClaim
            metadata: {name: line3}
            spec: {names: ["line3-?"], maxUses: 2, expires: 1h}
            """),
    )
    declared = applied["new_claim_tokens"]["line3"]
    other = ec.generate_private_key(ec.SECP256R1())
    assert _enroll(hub, enroll_body(declared, "line3-ab", other)).json() == CLAIM_REFUSED
    assert _enroll(hub, enroll_body(declared, "line3-a", other)).status_code == 200
    with hub.client() as client:
        bad = client.post(
            "/v1/manifests/apply",
            json={
                "files": [
                    {
                        "name": "bad.yaml",
                        "text": "apiVersion: fogline.dev/v1\nkind: ProvisioningClaim\n"
                        "metadata: {name: badnames}\n"
                        "spec: {names: ['Plant[7]'], maxUses: 1, expires: 1h}\n",
                    }
                ]
            },
        )
    assert bad.status_code == 422 and "spec.names[0]" in bad.json()["details"][0]["field"]


def test_a_squatted_name_is_a_conflict_and_an_operator_frees_it_with_rm(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    shared = _claim(hub, max_uses=5)  # baked into every image: the squatter has it too
    squatter = ec.generate_private_key(ec.SECP256R1())
    enroll_device(hub, shared, "press-42", tmp_path, key=squatter)
    real = ec.generate_private_key(ec.SECP256R1())
    taken = _enroll(hub, enroll_body(shared, "press-42", real))
    assert taken.status_code == 409
    assert taken.json()["details"] == [
        {"field": "name", "reason": "device name 'press-42' is taken"}
    ]

    refused = hub.cli("devices", "rm", "press-42", check=False)
    assert refused.returncode == 1 and "not revoked" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    hub.cli("devices", "rm", "press-42", "--force")

    refusal, entry = [e for e in _audit(hub, "device.rm") if e["target"] == "press-42"]
    assert refusal["outcome"] == "refused" and "not revoked" in refusal["detail"]["reason"]
    assert entry["outcome"] == "ok" and entry["detail"]["forced"] is True
    with hub.client() as client:
        assert client.get("/v1/devices/press-42").status_code == 404
    assert _enroll(hub, enroll_body(shared, "press-42", real)).status_code == 200
    again = _enroll(hub, enroll_body(shared, "press-43", squatter))  # its key stays refused
    assert again.status_code == 403 and again.json()["details"][0]["field"] == "csr"


# -- the same name, twenty times at once --------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def race_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    db_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    hub = start_hub(tmp_path / "hub", db_url=db_url)
    try:
        yield hub
    finally:
        hub.stop()


def test_twenty_enrollments_of_one_name_at_once_give_one_device_and_nineteen_409s(
    race_hub: HubProcess,
) -> None:
    hub = race_hub
    claim = _claim(hub, max_uses=40)
    bodies = [
        enroll_body(claim, "contested", ec.generate_private_key(ec.SECP256R1())) for _ in range(20)
    ]
    start = threading.Barrier(len(bodies), timeout=30)
    results: list[httpx.Response | None] = [None] * len(bodies)

    def enroll(index: int) -> None:
        with httpx.Client(verify=tls(hub.ca), timeout=60) as client:
            start.wait()
            results[index] = client.post(f"{hub.url}/v1/enroll", json=bodies[index])

    threads = [threading.Thread(target=enroll, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    statuses = sorted(r.status_code for r in results if r is not None)
    assert statuses == [200] + [409] * 19, [r.text for r in results if r is not None]
    for response in results:
        assert response is not None
        if response.status_code == 409:
            assert response.json()["details"][0]["field"] == "name"
    with hub.client() as client:
        claims = client.get("/v1/claims").json()
    assert [c["uses"] for c in claims] == [1]  # the losers took no use of the claim
