"""Every class of manifest mistake, reported at its exact file:line:column and path."""

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from fogline.manifest import ManifestError, Problem

from ._support import deployment_doc, load, problems

HEADER = "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata:\n  name: web\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "- a\n- b\n",
            "fleet.yaml:1:1: a document must be a mapping with apiVersion, kind, metadata "
            "and spec (got a list)",
            id="document-not-a-mapping",
        ),
        pytest.param(
            "kind: Deployment\nmetadata: {name: a}\n",
            "fleet.yaml:1:1: apiVersion: required field is missing (expected fogline.dev/v1)",
            id="missing-apiVersion",
        ),
        pytest.param(
            "apiVersion: fogline.dev/v2\nkind: Deployment\n",
            "fleet.yaml:1:13: apiVersion: must be fogline.dev/v1 (got 'fogline.dev/v2')",
            id="unknown-apiVersion",
        ),
        pytest.param(
            "apiVersion: fogline.dev/v1\nmetadata: {name: a}\n",
            "fleet.yaml:1:1: kind: required field is missing "
            "(one of Deployment, ProvisioningClaim, ReleaseKey, VulnerabilityPolicy)",
            id="missing-kind",
        ),
        pytest.param(
            "apiVersion: fogline.dev/v1\nkind: Deploymnet\n",
            "fleet.yaml:2:7: kind: must be one of Deployment, ProvisioningClaim, ReleaseKey, VulnerabilityPolicy "
            "(got 'Deploymnet')",
            id="unknown-kind",
        ),
        pytest.param(
            "apiVersion: fogline.dev/v1\nkind: [Deployment]\n",
            "fleet.yaml:2:7: kind: must be one of Deployment, ProvisioningClaim, ReleaseKey, VulnerabilityPolicy "
            "(got a list)",
            id="kind-of-wrong-type",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  prority: 3\n",
            "fleet.yaml:7:3: spec.prority: unknown field 'prority' (did you mean 'priority'?)",
            id="unknown-field-close-to-a-known-one",
        ),
        pytest.param(
            HEADER + "spec:\n  selector:\n    matchLabels: {}\n    labels: {a: b}\n",
            "fleet.yaml:8:5: spec.selector.labels: unknown field 'labels' "
            "(expected one of: matchLabels, matchExpressions)",
            id="unknown-field-lists-the-known-ones",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\nstatus: {}\n",
            "fleet.yaml:7:1: status: unknown field 'status' "
            "(expected one of: apiVersion, kind, metadata, spec)",
            id="unknown-top-level-field",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  priority: '5'\n",
            "fleet.yaml:7:13: spec.priority: must be an integer (got '5')",
            id="string-for-integer",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  priority: 2.5\n",
            "fleet.yaml:7:13: spec.priority: must be an integer (got the number 2.5)",
            id="float-for-integer",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  priority: true\n",
            "fleet.yaml:7:13: spec.priority: must be an integer (got the boolean true)",
            id="boolean-for-integer",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  priority: 1001\n",
            "fleet.yaml:7:13: spec.priority: must be at most 1000 (got 1001)",
            id="priority-too-high",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: []\n",
            "fleet.yaml:6:13: spec.selector: must be a mapping (got a list)",
            id="list-for-mapping",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  config: [1, 2]\n",
            "fleet.yaml:7:11: spec.config: must be a mapping (got a list)",
            id="config-must-be-a-mapping",
        ),
        pytest.param(
            HEADER + "spec:\n  priority: 3\n",
            "fleet.yaml:6:3: spec.selector: required field is missing",
            id="missing-field-points-at-its-parent",
        ),
        pytest.param(
            HEADER + "spec:\n",
            "fleet.yaml:5:6: spec: must be a mapping (got null)",
            id="empty-spec",
        ),
        pytest.param(
            "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata: {}\nspec: {selector: {}}\n",
            "fleet.yaml:3:11: metadata.name: required field is missing",
            id="missing-name",
        ),
        pytest.param(
            "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata: {name: Web_1}\n"
            "spec: {selector: {}}\n",
            "fleet.yaml:3:18: metadata.name: must be 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit (got 'Web_1')",
            id="name-not-a-dns-label",
        ),
        pytest.param(
            HEADER + "spec:\n  selector:\n    matchExpressions:\n      - key: arch\n"
            "        operator: In\n        values: [arm64]\n      - key: zone\n        operator: Is\n",
            "fleet.yaml:12:19: spec.selector.matchExpressions[1].operator: must be one of "
            "In, NotIn, Exists, DoesNotExist (got 'Is')",
            id="operator-unknown",
        ),
        pytest.param(
            HEADER + "spec:\n  selector:\n    matchExpressions:\n"
            "      - {key: arch, operator: In, values: []}\n",
            "fleet.yaml:8:43: spec.selector.matchExpressions[0].values: must list at least "
            "one value for In",
            id="in-without-values",
        ),
        pytest.param(
            HEADER + "spec:\n  selector:\n    matchExpressions:\n"
            "      - {key: arch, operator: NotIn}\n",
            "fleet.yaml:8:9: spec.selector.matchExpressions[0].values: must list at least "
            "one value for NotIn",
            id="notin-without-values-points-at-the-entry",
        ),
        pytest.param(
            HEADER + "spec:\n  selector:\n    matchExpressions:\n"
            "      - {key: gpu, operator: Exists, values: [yes]}\n",
            "fleet.yaml:8:46: spec.selector.matchExpressions[0].values: must be omitted for Exists",
            id="exists-with-values",
        ),
        pytest.param(
            HEADER + "spec:\n  selector:\n    matchExpressions:\n"
            "      - {key: arch, operator: In, values: [ok, 'not ok']}\n",
            "fleet.yaml:8:48: spec.selector.matchExpressions[0].values[1]: label value "
            "'not ok' for 'arch' must be at most 63 characters of letters, digits, '.', '_', "
            "'-', starting and ending with a letter or digit",
            id="invalid-label-value-in-expression",
        ),
        pytest.param(
            HEADER + "spec:\n  selector:\n    matchLabels:\n      'bad key': x\n",
            "fleet.yaml:8:7: spec.selector.matchLabels[\"bad key\"]: label key 'bad key' must "
            "be 1-63 characters of letters, digits, '.', '_', '-', '/'",
            id="invalid-label-key-points-at-the-key",
        ),
        pytest.param(
            HEADER + "spec:\n  selector:\n    matchLabels:\n      fogline.dev/arch: 7\n",
            'fleet.yaml:8:25: spec.selector.matchLabels["fogline.dev/arch"]: must be a '
            "string (got the integer 7)",
            id="label-value-not-a-string",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  drift: fix\n",
            "fleet.yaml:7:10: spec.drift: must be one of correct, report (got 'fix')",
            id="drift-unknown",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  modules:\n    - {name: a}\n    - {version: 2}\n",
            "fleet.yaml:9:7: spec.modules[1].name: required field is missing",
            id="module-without-name",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  pipelines:\n    - name: a\n    - name: a\n",
            "fleet.yaml:9:13: spec.pipelines[1].name: duplicate pipeline name 'a' "
            "(first at spec.pipelines[0])",
            id="pipeline-name-twice",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  modules: [{name: 3}]\n",
            "fleet.yaml:7:20: spec.modules[0].name: must be a string (got the integer 3)",
            id="module-name-not-a-string",
        ),
        pytest.param(
            HEADER + "spec:\n  selector: {}\n  modules: [x]\n",
            "fleet.yaml:7:13: spec.modules[0]: must be a mapping (got 'x')",
            id="module-not-a-mapping",
        ),
    ],
)
def test_deployment_mistake_is_reported_exactly(text: str, expected: str) -> None:
    assert problems(text) == [expected]


CLAIM = "apiVersion: fogline.dev/v1\nkind: ProvisioningClaim\nmetadata: {name: line-a}\nspec:\n"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "  maxUses: 0\n  expires: 24h\n",
            "fleet.yaml:5:12: spec.maxUses: must be at least 1 (got 0)",
        ),
        ("  expires: 24h\n", "fleet.yaml:5:3: spec.maxUses: required field is missing"),
        (
            "  maxUses: 5\n  expires: 0s\n",
            "fleet.yaml:6:12: spec.expires: must be a positive duration (got '0s')",
        ),
        (
            "  maxUses: 5\n  expires: soon\n",
            "fleet.yaml:6:12: spec.expires: must be a duration like 30m, 24h or 7d, or an "
            "ISO 8601 timestamp like 2030-01-31T12:00:00Z (got 'soon')",
        ),
        (
            "  maxUses: 5\n  expires: 2030-01-01T00:00:00\n",
            "fleet.yaml:6:12: spec.expires: timestamp '2030-01-01T00:00:00' needs a timezone, "
            "e.g. a trailing Z for UTC",
        ),
        (
            "  maxUses: 5\n  expires: 24h\n  labels: {site: 'a b'}\n",
            "fleet.yaml:7:18: spec.labels.site: label value 'a b' for 'site' must be at most "
            "63 characters of letters, digits, '.', '_', '-', starting and ending with a "
            "letter or digit",
        ),
    ],
)
def test_claim_mistake_is_reported_exactly(spec: str, expected: str) -> None:
    assert problems(CLAIM + spec) == [expected]


def test_claim_labels_under_the_hub_prefix_and_bad_name_patterns_are_refused() -> None:
    spec = (
        "  maxUses: 5\n  expires: 24h\n  labels: {fogline.dev/arch: arm64}\n"
        "  names: [ok-*, 'Plant[7]']\n"
    )
    assert problems(CLAIM + spec) == [
        "fleet.yaml:7:12: spec.labels[\"fogline.dev/arch\"]: label key 'fogline.dev/arch': "
        "keys under fogline.dev/ belong to the hub",
        "fleet.yaml:8:17: spec.names[1]: a name pattern is 1-63 lowercase letters, digits, "
        "'-', and the globs '*' and '?' (got 'Plant[7]')",
    ]


def test_claim_names_load_and_read_back() -> None:
    (claim,) = load(CLAIM + "  maxUses: 5\n  expires: 24h\n  names: [plant7-*, spare-?]\n").claims
    assert claim.names == ("plant7-*", "spare-?")
    assert claim.to_document()["spec"]["names"] == ["plant7-*", "spare-?"]


def test_claim_loads_with_duration_or_timestamp() -> None:
    manifests = load(
        CLAIM
        + "  maxUses: 50\n  expires: 7d\n  labels: {site: berlin}\n---\n"
        + CLAIM.replace("line-a", "line-b")
        + "  maxUses: 1\n  expires: 2030-01-31T12:00:00Z\n"
    )
    week, fixed = manifests.claims
    assert (week.name, week.max_uses, dict(week.labels)) == ("line-a", 50, {"site": "berlin"})
    from datetime import UTC, datetime

    applied = datetime(2030, 1, 1, tzinfo=UTC)
    assert week.expires_at(applied) == datetime(2030, 1, 8, tzinfo=UTC)
    assert fixed.expires_at(applied) == datetime(2030, 1, 31, 12, tzinfo=UTC)


KEY = (
    "apiVersion: fogline.dev/v1\nkind: ReleaseKey\nmetadata: {name: release}\nspec:\n  publicKey: "
)


def _ed25519() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def test_release_key_accepts_pem_and_base64_raw() -> None:
    private = _ed25519()
    public = private.public_key()
    raw = public.public_bytes_raw()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    pem_block = "|\n" + "".join(f"    {line}\n" for line in pem.splitlines())
    b64 = base64.b64encode(raw).decode()
    manifests = load(KEY + pem_block + "---\n" + KEY.replace("release", "backup") + b64 + "\n")
    assert [k.public_key for k in manifests.release_keys] == [raw, raw]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not-a-key", "must be an Ed25519 public key as PEM or as base64 of its 32 bytes"),
        (
            base64.b64encode(b"x" * 31).decode(),
            "must be base64 of 32 bytes, an Ed25519 public key (got 31)",
        ),
        ("'-----BEGIN PUBLIC KEY-----'", "must be a PEM public key; this PEM text does not parse"),
    ],
)
def test_release_key_rejects_what_is_not_an_ed25519_key(value: str, reason: str) -> None:
    assert problems(KEY + value + "\n") == [f"fleet.yaml:5:14: spec.publicKey: {reason}"]


def test_release_key_rejects_an_rsa_pem() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = rsa_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    block = "|\n" + "".join(f"    {line}\n" for line in pem.splitlines())
    [found] = problems(KEY + block)
    assert found == "fleet.yaml:5:14: spec.publicKey: must be an Ed25519 public key (got RSA key)"


def test_duplicate_name_points_at_the_second_and_names_the_first() -> None:
    text = (
        deployment_doc("web")
        + "---\n"
        + CLAIM.replace("line-a", "web")  # another kind may reuse the name
        + "  maxUses: 1\n  expires: 1h\n---\n"
        + deployment_doc("web", "selector: {}\npriority: 3")
    )
    assert problems(text) == [
        "fleet.yaml:18:9: metadata.name: duplicate Deployment name 'web' "
        "(first defined at fleet.yaml:4:9)"
    ]


def test_duplicate_name_is_reported_even_when_the_document_has_other_mistakes() -> None:
    text = deployment_doc("web") + "---\n" + deployment_doc("web", "selector: 5")
    assert problems(text) == [
        "fleet.yaml:11:9: metadata.name: duplicate Deployment name 'web' "
        "(first defined at fleet.yaml:4:9)",
        "fleet.yaml:13:13: spec.selector: must be a mapping (got the integer 5)",
    ]


def test_same_priority_with_overlapping_selectors_is_ambiguous() -> None:
    text = (
        deployment_doc("berlin", "selector: {matchLabels: {site: berlin}}\npriority: 10")
        + "---\n"
        + deployment_doc("arm", "selector: {matchLabels: {arch: arm64}}\npriority: 10")
    )
    assert problems(text) == [
        "fleet.yaml:15:13: spec.priority: deployment 'arm' has the same priority 10 as "
        "'berlin' (at fleet.yaml:4:9) and their selectors can match the same device; give "
        "them different priorities or selectors that exclude each other"
    ]


def test_same_default_priority_conflict_points_at_spec() -> None:
    text = deployment_doc("a") + "---\n" + deployment_doc("b")
    [found] = problems(text)
    assert found.startswith(
        "fleet.yaml:13:3: spec.priority: deployment 'b' has the same priority 0"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("{matchLabels: {site: berlin}}", "{matchLabels: {site: paris}}"),
        (
            "{matchLabels: {site: berlin}}",
            "{matchExpressions: [{key: site, operator: NotIn, values: [berlin]}]}",
        ),
        (
            "{matchExpressions: [{key: site, operator: In, values: [a, b]}]}",
            "{matchExpressions: [{key: site, operator: In, values: [c]}]}",
        ),
        (
            "{matchExpressions: [{key: gpu, operator: Exists}]}",
            "{matchExpressions: [{key: gpu, operator: DoesNotExist}]}",
        ),
        ("{matchLabels: {gpu: 'yes'}}", "{matchExpressions: [{key: gpu, operator: DoesNotExist}]}"),
    ],
)
def test_same_priority_with_disjoint_selectors_is_fine(first: str, second: str) -> None:
    text = (
        deployment_doc("one", f"selector: {first}\npriority: 5")
        + "---\n"
        + deployment_doc("two", f"selector: {second}\npriority: 5")
    )
    assert len(load(text).deployments) == 2


def test_all_problems_of_all_documents_are_reported_at_once() -> None:
    text = (
        HEADER + "spec:\n  selector: {}\n  priority: x\n  drift: no\n"
        "---\n" + "apiVersion: fogline.dev/v1\nkind: Nope\n"
        "---\n" + "[]\n"
    )
    assert problems(text) == [
        "fleet.yaml:7:13: spec.priority: must be an integer (got 'x')",
        "fleet.yaml:8:10: spec.drift: must be one of correct, report (got 'no')",
        "fleet.yaml:11:7: kind: must be one of Deployment, ProvisioningClaim, ReleaseKey, VulnerabilityPolicy "
        "(got 'Nope')",
        "fleet.yaml:13:1: a document must be a mapping with apiVersion, kind, metadata and "
        "spec (got a list)",
    ]


def test_error_message_renders_one_problem_per_line() -> None:
    error = ManifestError(
        [
            Problem("fleet.yaml", 12, 7, "spec.priority", "must be an integer (got 'x')"),
            Problem("fleet.yaml", None, None, "", "larger than 1048576 bytes"),
        ]
    )
    assert str(error) == (
        "fleet.yaml:12:7: spec.priority: must be an integer (got 'x')\n"
        "fleet.yaml: larger than 1048576 bytes"
    )


def test_error_message_is_capped_but_problems_are_complete() -> None:
    many = [Problem("f.yaml", i, 1, "", "bad") for i in range(1, 151)]
    error = ManifestError(many)
    assert len(error.problems) == 150
    assert str(error).splitlines()[-1] == "... and 50 more problems"


def test_valid_deployment_loads_into_frozen_objects() -> None:
    text = HEADER + (
        "spec:\n"
        "  selector:\n"
        "    matchLabels: {site: berlin}\n"
        "    matchExpressions: [{key: arch, operator: In, values: [arm64, amd64]}]\n"
        "  priority: 7\n"
        "  config: {sampling: {rate: 5}}\n"
        "  modules: [{name: thermo, version: 1.2.0}]\n"
        "  rollout: {waves: [1, 10, 100]}\n"
        "  drift: correct\n"
    )
    [web] = load(text).deployments
    assert (web.name, web.priority, web.drift) == ("web", 7, "correct")
    assert web.selector.matches({"site": "berlin", "arch": "arm64"})
    assert web.config == {"sampling": {"rate": 5}}
    assert web.modules == ({"name": "thermo", "version": "1.2.0"},)
    config: Any = web.config
    with pytest.raises(TypeError):
        config["sampling"]["rate"] = 6


def test_to_document_reads_back_to_an_equal_object() -> None:
    text = HEADER + (
        "spec:\n  selector: {matchExpressions: [{key: a, operator: Exists}]}\n"
        "  config: {x: [1, {y: null}]}\n  pipelines: [{name: p, steps: []}]\n"
    )
    [web] = load(text).deployments
    import orjson

    [again] = load(orjson.dumps(web.to_document()).decode()).deployments
    assert again == web
