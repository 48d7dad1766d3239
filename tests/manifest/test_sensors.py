"""`spec.sensors`: ingest token digests and MQTT sensor accounts, checked at plan
time with the file, the path and the reason, and layered into the desired document."""

import hashlib

import pytest

from fogline.manifest import canonical_json, compile_desired_state
from fogline.protocol import DesiredDocument
from fogline.security import hash_sensor_password

from ._support import deployment_doc, load, problems

DIGEST = hashlib.sha256(b"line-1-token").hexdigest()
HASH = hash_sensor_password("press-7-password", iterations=101)


def sensors(body: str) -> str:
    return deployment_doc("edge", "selector: {}\nsensors:\n" + body)


def test_a_deployment_declares_ingest_tokens_and_sensor_accounts_and_reads_back() -> None:
    text = sensors(
        f"  ingest:\n    tokens:\n      - {{name: line-1, sha256: {DIGEST}}}\n"
        f"  mqtt:\n    users:\n      - {{username: press-7, passwordHash: '{HASH}'}}\n"
    )
    [deployment] = load(text).deployments
    assert deployment.to_document()["spec"]["sensors"] == {
        "ingest": {"tokens": [{"name": "line-1", "sha256": DIGEST}]},
        "mqtt": {"users": [{"username": "press-7", "passwordHash": HASH}]},
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "  ingest:\n    tokens:\n      - {name: l1, sha256: my-plain-token}\n",
            "spec.sensors.ingest.tokens[0].sha256: must be the token's SHA-256 as 64 "
            "lowercase hex digits",
            id="a-token-instead-of-its-digest",
        ),
        pytest.param(
            f"  ingest:\n    tokens:\n      - {{name: a, sha256: {DIGEST}}}\n"
            f"      - {{name: a, sha256: {DIGEST}}}\n",
            "spec.sensors.ingest.tokens[1].name: duplicate name 'a' "
            "(first at spec.sensors.ingest.tokens[0])",
            id="duplicate-token-name",
        ),
        pytest.param(
            "  mqtt:\n    users:\n      - {username: s1, passwordHash: hunter2}\n",
            "spec.sensors.mqtt.users[0].passwordHash: must be a Mosquitto PBKDF2-SHA512 hash",
            id="a-password-instead-of-its-hash",
        ),
        pytest.param(
            "  mqtt:\n    users:\n      - {username: 's1:x', passwordHash: '" + HASH + "'}\n",
            "spec.sensors.mqtt.users[0].username: must be 1-64 letters",
            id="a-colon-would-split-the-password-file-line",
        ),
        pytest.param(
            '  mqtt:\n    users:\n      - {username: "s1\\nevil:$7$", passwordHash: \''
            + HASH
            + "'}\n",
            "spec.sensors.mqtt.users[0].username: must be 1-64 letters",
            id="a-newline-would-add-a-password-file-line",
        ),
        pytest.param(
            "  mqtt:\n    users:\n      - {username: s1, passwordHash: '"
            + HASH.replace("$101$", "$99999999$")
            + "'}\n",
            "spec.sensors.mqtt.users[0].passwordHash: iterations must be 1-1000000",
            id="iterations-that-would-stall-the-broker",
        ),
        pytest.param(
            "  mqtt:\n    users:\n      - {username: s1, passwordHash: '"
            + HASH
            + "', publish: ['sensors/#/x']}\n",
            "spec.sensors.mqtt.users[0].publish[0]: '#' must be the last level",
            id="hash-wildcard-in-the-middle",
        ),
        pytest.param(
            "  mqtt:\n    users:\n      - {username: s1, passwordHash: '"
            + HASH
            + "', publish: ['sensors/s1/# topic readwrite #']}\n",
            "spec.sensors.mqtt.users[0].publish[0]: must be an MQTT topic filter",
            id="a-space-would-add-an-acl-rule",
        ),
        pytest.param(
            "  ingest: {token: abc}\n",
            "spec.sensors.ingest.token: unknown field",
            id="unknown-field",
        ),
    ],
)
def test_a_wrong_sensors_block_is_refused_naming_file_path_and_reason(
    body: str, expected: str
) -> None:
    [problem] = problems(sensors(body))
    assert problem.startswith("fleet.yaml:"), problem
    assert expected in problem, problem


def test_layers_merge_tokens_by_name_and_accounts_by_username() -> None:
    other = hashlib.sha256(b"other").hexdigest()
    base = deployment_doc(
        "base",
        "selector: {}\nsensors:\n"
        f"  ingest:\n    tokens:\n      - {{name: a, sha256: {DIGEST}}}\n"
        f"      - {{name: b, sha256: {DIGEST}}}\n"
        f"  mqtt:\n    users:\n      - {{username: s1, passwordHash: '{HASH}'}}\n",
    )
    site = deployment_doc(
        "site",
        "selector: {matchLabels: {site: x}}\npriority: 5\nsensors:\n"
        f"  ingest:\n    tokens:\n      - {{name: b, sha256: {other}}}\n",
    )
    manifests = load(base + "---\n" + site)
    document = compile_desired_state(manifests.deployments, {"site": "x"}).document
    parsed = DesiredDocument.model_validate_json(canonical_json(document))
    assert parsed.sensors is not None
    assert parsed.sensors.ingest_digests == (DIGEST, other)
    assert [u.username for u in parsed.sensors.mqtt_users] == ["s1"]


def test_a_document_without_sensors_has_no_sensors_key_and_keeps_its_revision() -> None:
    [deployment] = load(deployment_doc("plain")).deployments
    state = compile_desired_state([deployment], {})
    assert "sensors" not in state.document
    assert (
        DesiredDocument.model_validate_json(canonical_json(state.document)).revision()
        == state.revision
    )


def test_the_node_refuses_a_document_whose_account_would_inject_a_line() -> None:
    bad = {"sensors": {"mqtt": {"users": [{"username": "s1\nroot", "passwordHash": HASH}]}}}
    with pytest.raises(ValueError, match="username"):
        DesiredDocument.model_validate(bad)


def test_a_sensor_publishes_under_its_own_name_unless_its_entry_says_where() -> None:
    text = sensors(
        "  mqtt:\n    users:\n"
        f"      - {{username: s1, passwordHash: '{HASH}'}}\n"
        f"      - {{username: s2, passwordHash: '{HASH}', publish: [line/+/temp, 'line/2/#']}}\n"
    )
    document = compile_desired_state(load(text).deployments, {}).document
    parsed = DesiredDocument.model_validate_json(canonical_json(document))
    assert parsed.sensors is not None
    assert [u.publish_filters for u in parsed.sensors.mqtt_users] == [
        ("sensors/s1/#",),
        ("line/+/temp", "line/2/#"),
    ]
