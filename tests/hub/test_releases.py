"""Module releases on the hub: module references in deployments, the artifact
store, and the release API of a real hub process (push, refusals, download)."""

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from starlette.middleware.exceptions import ExceptionMiddleware

from fogline.artifact import (
    SignatureEnvelope,
    build_release,
    generate_release_key,
    public_key_base64,
    sign_release,
    signed_message,
)
from fogline.hub import HubState, create_app, make_engine, upgrade_schema
from fogline.hub._bodies import BodyLimit
from fogline.hub._db import make_session_factory
from fogline.hub._error_responses import error_response
from fogline.hub._errors import ApiError
from fogline.hub._tokens import ensure_admin_token
from fogline.hub.releases import (
    ArtifactStore,
    ReleaseRejectedError,
    new_release_row,
    resolve_module_refs,
    validate_module_block,
)
from fogline.hub.releases._refs import parse_module_ref
from fogline.manifest import (
    BlockError,
    BlockValidators,
    ManifestError,
    ManifestSource,
    Origin,
    load_manifests,
)
from fogline.security import ADMIN_PREFIX, CertificateAuthority
from tests.support.device import enroll_device
from tests.support.processes import start_hub, tls

DIGEST_A = "sha256:" + "a" * 64


def _module_dir(root: Path, name: str, version: str, payload: bytes = b"hello\n") -> Path:
    root.mkdir(parents=True)
    (root / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    (root / "data.bin").write_bytes(payload)
    return root


def _release(tmp: Path, name: str, version: str, key, payload: bytes = b"hello\n"):
    """Build and sign a small release; returns (archive path, envelope)."""
    src = _module_dir(tmp / f"src-{name}-{version}-{len(payload)}", name, version, payload)
    archive = tmp / f"{name}-{version}-{len(payload)}.tar.zst"
    build_release(src, archive)
    return archive, sign_release(archive, key)


def _header(envelope: SignatureEnvelope) -> dict[str, str]:
    return {"x-fogline-signature": base64.b64encode(envelope.to_json()).decode()}


# -- module blocks and references (pure / database only) ----------------------------------


@pytest.mark.parametrize(
    "block",
    [
        {"name": "thermo-filter", "release": "thermo-filter@1.2.0"},
        {"name": "thermo-filter", "release": "thermo-filter@2.0.0-rc.1+build.7"},
        {"name": "anything.goes", "release": DIGEST_A},
        {
            "name": "thermo-filter",
            "release": "thermo-filter@1.2.0",
            "config": {"threshold": 3.5, "nested": {"a": [1, 2]}},
            "env": {"PORT": "8081", "_x1": ""},
        },
    ],
)
def test_module_block_accepts_release_references(block):
    validate_module_block(block)  # no exception


@pytest.mark.parametrize(
    ("block", "path", "reason"),
    [
        ({"name": "m", "release": "m@1.0.0", "image": "x"}, ("image",), "unknown field"),
        ({"name": "m"}, ("release",), "required field is missing"),
        ({"name": "m", "release": "m@v1.0.0"}, ("release",), "semantic version"),
        ({"name": "m", "release": "m@1.0"}, ("release",), "semantic version"),
        ({"name": "m", "release": "m"}, ("release",), "NAME@VERSION"),
        ({"name": "m", "release": "M@1.0.0"}, ("release",), "not a module name"),
        ({"name": "m", "release": "sha256:" + "A" * 64}, ("release",), "lowercase hex"),
        ({"name": "m", "release": DIGEST_A + "\n"}, ("release",), "lowercase hex"),
        ({"name": "m", "release": 12}, ("release",), "got int"),
        ({"name": "m", "release": "m@1.0.0" + "0" * 300}, ("release",), "characters"),
        ({"name": "m", "release": "other@1.0.0"}, ("release",), "is module 'other'"),
        ({"name": "m", "release": "m@1.0.0", "config": [1]}, ("config",), "mapping"),
        ({"name": "m", "release": "m@1.0.0", "env": ["A=b"]}, ("env",), "mapping"),
        ({"name": "m", "release": "m@1.0.0", "env": {"PORT": 8081}}, ("env", "PORT"), "quote"),
        ({"name": "m", "release": "m@1.0.0", "env": {"1X": "a"}}, ("env", "1X"), "letters"),
        (
            {"name": "m", "release": "m@1.0.0", "env": {"FOGLINE_DIR": "/"}},
            ("env", "FOGLINE_DIR"),
            "set by the agent",
        ),
        ({"name": "m", "release": "m@1.0.0", "env": {"A": "a\x00b"}}, ("env", "A"), "NUL"),
    ],
)
def test_module_block_refuses_with_the_field_and_reason(block, path, reason):
    with pytest.raises(BlockError) as caught:
        validate_module_block(block)
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_module_block_problem_points_at_the_yaml_position():
    text = textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: sensors}
        spec:
          selector: {}
          modules:
            - name: thermo-filter
              release: thermo-filter@1.2
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifests(
            [ManifestSource("fleet.yaml", text)],
            validators=BlockValidators(module=validate_module_block),
        )
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.path) == (
        "fleet.yaml",
        8,
        "spec.modules[0].release",
    )
    assert "semantic version" in problem.reason


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parsing_any_release_text_either_succeeds_or_says_why(text):
    try:
        ref = parse_module_ref(text)
    except ValueError as exc:
        assert "NAME@VERSION" in str(exc) or "semantic version" in str(exc)
    else:
        assert str(ref) == text


@settings(max_examples=100, deadline=None)
@given(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})", fullmatch=True),
)
def test_every_module_name_and_semantic_version_is_a_reference(name, version):
    ref = parse_module_ref(f"{name}@{version}")
    assert (ref.name, ref.version, ref.digest, str(ref)) == (
        name,
        version,
        None,
        f"{name}@{version}",
    )
    validate_module_block({"name": name, "release": f"{name}@{version}"})


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub.db'}")
    upgrade_schema(engine)
    factory = make_session_factory(engine)
    key = generate_release_key()
    now = dt.datetime.now(dt.UTC)
    with factory() as session, session.begin():
        for name, version, digest in (
            ("thermo-filter", "1.2.0", "sha256:" + "1" * 64),
            ("thermo-filter", "1.3.0", "sha256:" + "2" * 64),
            ("relay", "0.1.0", "sha256:" + "3" * 64),
        ):
            raw = key.private_key.sign(signed_message(name, version, digest))
            envelope = SignatureEnvelope(
                keyid=key.key_id,
                name=name,
                version=version,
                digest=digest,
                signature=base64.b64encode(raw).decode(),
            )
            session.add(new_release_row(envelope, 100, "test", now))
    yield factory
    engine.dispose()


def _deployment(*modules):
    return {
        "apiVersion": "fogline.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "sensors"},
        "spec": {"selector": {}, "priority": 0, "modules": list(modules)},
    }


def test_references_resolve_to_version_digest_and_signature(sessions):
    document = _deployment(
        {"name": "thermo-filter", "release": "thermo-filter@1.3.0", "env": {"A": "b"}},
        {"name": "relay", "release": "sha256:" + "3" * 64},
    )
    with sessions() as session:
        resolved = resolve_module_refs(session, document)
    first, second = resolved["spec"]["modules"]
    assert (first["version"], first["digest"]) == ("1.3.0", "sha256:" + "2" * 64)
    assert first["env"] == {"A": "b"}
    assert (
        first["signature"]["name"] == "thermo-filter" and first["signature"]["version"] == "1.3.0"
    )
    assert SignatureEnvelope.model_validate(first["signature"]).digest == first["digest"]
    assert (second["version"], second["digest"]) == ("0.1.0", "sha256:" + "3" * 64)
    assert "digest" not in document["spec"]["modules"][0]  # the input is left alone


def test_every_bad_reference_is_reported_at_the_deployment_origin(sessions):
    document = _deployment(
        {"name": "thermo-filter", "release": "thermo-filter@9.9.9"},
        {"name": "thermo-filter2", "release": "sha256:" + "3" * 64},
        {"name": "relay", "release": "sha256:" + "f" * 64},
        {"name": "thermo-filter3", "release": "thermo-filter@1.2.0"},
        {"name": "x", "release": "x@1"},
    )
    with sessions() as session, pytest.raises(ManifestError) as caught:
        resolve_module_refs(session, document, origin=Origin("fleet.yaml", 12, 1))
    problems = caught.value.problems
    assert [p.path for p in problems] == [f"spec.modules[{i}].release" for i in range(5)]
    assert all((p.file, p.line, p.column) == ("fleet.yaml", 12, 1) for p in problems)
    reasons = [p.reason for p in problems]
    assert "has not been pushed" in reasons[0]
    assert "is module 'relay'" in reasons[1]
    assert "no release with digest" in reasons[2]
    assert "is module 'thermo-filter'" in reasons[3]
    assert "semantic version" in reasons[4]
    assert str(caught.value).startswith("fleet.yaml:12:1: spec.modules[0].release:")


def test_a_deployment_without_modules_resolves_to_an_equal_copy(sessions):
    document = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"selector": {}}}
    with sessions() as session:
        resolved = resolve_module_refs(session, document)
    assert resolved == document and resolved is not document


def test_a_name_and_version_is_stored_once_on_sqlite_and_postgresql(db_url):
    engine = make_engine(db_url)
    upgrade_schema(engine)
    factory = make_session_factory(engine)
    key = generate_release_key()
    now = dt.datetime.now(dt.UTC)

    def row(digest):
        raw = key.private_key.sign(signed_message("m", "1.0.0", digest))
        envelope = SignatureEnvelope(
            keyid=key.key_id,
            name="m",
            version="1.0.0",
            digest=digest,
            signature=base64.b64encode(raw).decode(),
        )
        return new_release_row(envelope, 600 * 1024 * 1024, "test", now)

    try:
        with factory() as session, session.begin():
            session.add(row(DIGEST_A))
        with pytest.raises(IntegrityError), factory() as session, session.begin():
            session.add(row("sha256:" + "b" * 64))
        with factory() as session:
            resolved = resolve_module_refs(
                session, _deployment({"name": "m", "release": "m@1.0.0"})
            )
        assert resolved["spec"]["modules"][0]["digest"] == DIGEST_A
    finally:
        engine.dispose()


# -- the artifact store and the body limit (in process) -----------------------------------


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 64 + "\n",
        "sha512:" + "a" * 64,
        "/etc/passwd",
        "",
    ],
)
def test_store_refuses_malformed_digests_before_touching_the_disk(tmp_path, digest):
    with pytest.raises(ReleaseRejectedError) as caught:
        ArtifactStore(tmp_path).path_for(digest)
    assert caught.value.status == 422


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


def test_store_hashes_while_streaming_and_renames_into_place(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    data = os.urandom(3 * 1024 * 1024 + 7)
    parts = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    staged = asyncio.run(store.receive(_chunks(*parts), max_bytes=len(data)))
    assert staged.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert staged.size == len(data)
    path = store.commit(staged)
    hexdigest = staged.digest.removeprefix("sha256:")
    assert path == tmp_path / "artifacts" / "sha256" / hexdigest[:2] / hexdigest[2:]
    assert path.read_bytes() == data and store.has(staged.digest)
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []


def test_store_refuses_an_oversized_upload_and_leaves_nothing(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ReleaseRejectedError) as caught:
        asyncio.run(store.receive(_chunks(b"x" * 600, b"y" * 600), max_bytes=1000))
    assert (caught.value.status, caught.value.code) == (413, "too_large")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_hub_start_sweeps_partial_uploads_a_crash_left_behind(tmp_path):
    tmp = tmp_path / "hub" / "artifacts" / "tmp"
    tmp.mkdir(parents=True)
    stale, fresh = tmp / "upload-old.part", tmp / "upload-new.part"
    stale.write_bytes(b"half an archive")
    fresh.write_bytes(b"still streaming")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    hub = start_hub(tmp_path / "hub")
    try:
        assert not stale.exists()
        assert fresh.exists()  # an upload in progress is left alone
        assert "hub.swept_partial_uploads" in hub.log_text()
    finally:
        hub.stop()


async def _echo_size(scope, receive, send):
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def test_body_limit_lets_only_large_paths_stream_big_bodies():
    asyncio.run(_body_limit_scenario())


async def _body_limit_scenario():
    async def on_api_error(request, exc):
        return error_response(exc, request.url.path)

    inner = ExceptionMiddleware(_echo_size, handlers={ApiError: on_api_error})
    app = BodyLimit(inner, max_bytes=100, large_paths={"/v1/releases": 1000})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        assert (await client.post("/v1/releases", content=b"x" * 900)).text == "900"
        assert (await client.post("/v1/other", content=b"x" * 101)).status_code == 413
        assert (await client.post("/v1/releasesX", content=b"x" * 101)).status_code == 413
        over = await client.post("/v1/releases", content=b"x" * 1001)
        assert (over.status_code, over.json()["error"]) == (413, "too_large")

        async def chunked():
            for _ in range(11):
                yield b"x" * 100

        streamed = await client.post("/v1/releases", content=chunked())
        assert (streamed.status_code, streamed.json()["error"]) == (413, "too_large")


def test_a_hub_without_an_artifact_store_answers_503(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade_schema(engine)
    state = HubState(
        engine, make_session_factory(engine), CertificateAuthority.load_or_create(tmp_path)
    )
    with state.transaction() as session:
        token = ensure_admin_token(session, ADMIN_PREFIX)
    assert token is not None and state.artifacts_dir is None

    async def scenario():
        transport = httpx.ASGITransport(app=create_app(state))
        headers = {"authorization": f"Bearer {token.token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            pushed = await client.post(
                "/v1/releases", content=b"x", headers={**headers, **_header(_any_envelope())}
            )
            fetched = await client.get(f"/v1/artifacts/{DIGEST_A}", headers=headers)
        return pushed, fetched

    try:
        for response in asyncio.run(scenario()):
            assert (response.status_code, response.json()["error"]) == (503, "store_unavailable")
    finally:
        engine.dispose()


def _any_envelope() -> SignatureEnvelope:
    return SignatureEnvelope(
        keyid="ed25519:" + "0" * 16,
        name="m",
        version="1.0.0",
        digest=DIGEST_A,
        signature=base64.b64encode(bytes(64)).decode(),
    )


# -- the release API of a real hub ---------------------------------------------------------


@pytest.fixture(scope="module")
def trusted(shared_hub):
    """A release key the shared hub trusts (applied as a ReleaseKey manifest)."""
    key = generate_release_key()
    manifest = textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: ReleaseKey
        metadata: {{name: hub-tests}}
        spec: {{publicKey: {public_key_base64(key.public_key)}}}
        """)
    with shared_hub.client() as client:
        response = client.post(
            "/v1/manifests/apply", json={"files": [{"name": "key.yaml", "text": manifest}]}
        )
        assert response.status_code == 200, response.text
    return key


def _push(hub, archive: Path, envelope: SignatureEnvelope, **kwargs) -> httpx.Response:
    with hub.client() as client:
        return client.post(
            "/v1/releases", content=archive.read_bytes(), headers=_header(envelope), **kwargs
        )


def test_push_stores_the_archive_by_digest_and_is_idempotent(shared_hub, trusted, tmp_path):
    archive, envelope = _release(tmp_path, "pushed", "1.0.0", trusted)
    first = _push(shared_hub, archive, envelope)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["name"], body["version"], body["digest"]) == ("pushed", "1.0.0", envelope.digest)
    assert body["size"] == archive.stat().st_size and body["key_id"] == trusted.key_id
    assert body["signature"] == json.loads(envelope.to_json())
    hexdigest = envelope.digest.removeprefix("sha256:")
    stored = shared_hub.data_dir / "artifacts" / "sha256" / hexdigest[:2] / hexdigest[2:]
    assert stored.read_bytes() == archive.read_bytes()

    again = _push(shared_hub, archive, envelope)
    assert again.status_code == 200 and again.json() == body
    with shared_hub.client() as client:
        rows = client.get("/v1/releases").json()
        shown = client.get("/v1/releases/pushed/1.0.0")
    assert [r["digest"] for r in rows if r["name"] == "pushed"] == [envelope.digest]
    assert shown.status_code == 200 and shown.json() == body


def test_same_version_with_other_bytes_is_a_conflict(shared_hub, trusted, tmp_path):
    archive, envelope = _release(tmp_path, "immutable", "1.0.0", trusted)
    assert _push(shared_hub, archive, envelope).status_code == 201
    other, other_envelope = _release(tmp_path, "immutable", "1.0.0", trusted, b"changed\n")
    refused = _push(shared_hub, other, other_envelope)
    assert refused.status_code == 409
    assert refused.json()["error"] == "version_conflict"
    assert envelope.digest in refused.json()["message"]
    with shared_hub.client() as client:
        assert client.get("/v1/releases/immutable/1.0.0").json()["digest"] == envelope.digest


def _forge(envelope: SignatureEnvelope, key, **changes) -> SignatureEnvelope:
    """An envelope with `changes`, validly signed by `key`."""
    fields = {**envelope.model_dump(mode="json"), **changes}
    raw = key.private_key.sign(signed_message(fields["name"], fields["version"], fields["digest"]))
    fields["signature"] = base64.b64encode(raw).decode()
    fields["keyid"] = key.key_id
    return SignatureEnvelope.model_validate(fields)


def test_push_refusals_name_their_reason(shared_hub, trusted, tmp_path):
    archive, envelope = _release(tmp_path, "refused", "1.0.0", trusted)
    stranger = generate_release_key()
    tampered = tmp_path / "tampered.tar.zst"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an archive at all")
    junk_digest = "sha256:" + hashlib.sha256(junk.read_bytes()).hexdigest()
    bad_signature = envelope.model_copy(update={"signature": base64.b64encode(bytes(64)).decode()})

    cases = [
        (archive, _forge(envelope, stranger), 403, "untrusted_key"),
        (archive, bad_signature, 422, "bad_signature"),
        (tampered, envelope, 422, "digest_mismatch"),
        (archive, _forge(envelope, trusted, name="another"), 422, "release_mismatch"),
        (archive, _forge(envelope, trusted, version="1.0.1"), 422, "release_mismatch"),
        (junk, _forge(envelope, trusted, digest=junk_digest), 422, "bad_archive"),
    ]
    for body, sent_envelope, status, code in cases:
        response = _push(shared_hub, body, sent_envelope)
        assert (response.status_code, response.json()["error"]) == (status, code), response.text
    with shared_hub.client() as client:
        for header in ({}, {"x-fogline-signature": "%%%"}, {"x-fogline-signature": "e30="}):
            response = client.post("/v1/releases", content=archive.read_bytes(), headers=header)
            assert response.status_code == 422
            assert response.json()["error"] == "malformed_signature"
        assert client.get("/v1/releases/refused/1.0.0").status_code == 404
        assert client.get("/v1/releases/another/1.0.0").status_code == 404
    assert list((shared_hub.data_dir / "artifacts" / "tmp").iterdir()) == []


def test_a_large_upload_refused_early_still_gets_its_error(shared_hub, tmp_path):
    stranger = generate_release_key()
    archive, envelope = _release(tmp_path, "big", "1.0.0", stranger, os.urandom(4 * 1024 * 1024))
    response = _push(shared_hub, archive, envelope)
    assert (response.status_code, response.json()["error"]) == (403, "untrusted_key")


def test_operator_endpoints_need_a_token(shared_hub):
    with httpx.Client(base_url=shared_hub.url, verify=tls(shared_hub.ca), timeout=10) as client:
        assert client.get("/v1/releases").status_code == 401
        assert client.post("/v1/releases", content=b"x").status_code == 401
        assert client.get("/v1/artifacts/" + DIGEST_A).status_code == 401
        assert client.get("/v1/releases/pushed/1.0.0").status_code == 401


@pytest.fixture(scope="module")
def published(shared_hub, trusted, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("published")
    archive, envelope = _release(tmp, "served", "2.0.0", trusted, os.urandom(200_000))
    assert _push(shared_hub, archive, envelope).status_code == 201
    return archive, envelope


def test_artifacts_download_whole_or_by_range(shared_hub, published):
    archive, envelope = published
    data = archive.read_bytes()
    with shared_hub.client() as client:
        whole = client.get(f"/v1/artifacts/{envelope.digest}")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["etag"] == f'"{envelope.digest}"'
        assert whole.headers["accept-ranges"] == "bytes"
        rest = client.get(f"/v1/artifacts/{envelope.digest}", headers={"range": "bytes=1000-"})
        assert rest.status_code == 206 and rest.content == data[1000:]
        assert rest.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
        middle = client.get(f"/v1/artifacts/{envelope.digest}", headers={"range": "bytes=5-9"})
        assert middle.status_code == 206 and middle.content == data[5:10]
        beyond = client.get(
            f"/v1/artifacts/{envelope.digest}", headers={"range": f"bytes={len(data) + 10}-"}
        )
        assert beyond.status_code == 416


@pytest.mark.parametrize(
    "digest",
    ["sha256:xyz", "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha256:" + ".." * 32, "hub.db"],
)
def test_malformed_digest_is_422(shared_hub, digest):
    with shared_hub.client() as client:
        response = client.get(f"/v1/artifacts/{digest}")
    assert response.status_code == 422 and response.json()["error"] == "invalid"


def test_an_encoded_slash_in_the_digest_matches_no_route(shared_hub):
    with shared_hub.client() as client:
        response = client.get("/v1/artifacts/sha256:..%2F..%2Fhub.db")
    assert response.status_code == 404 and b"SQLite" not in response.content


def test_unknown_digest_is_404(shared_hub):
    with shared_hub.client() as client:
        assert client.get(f"/v1/artifacts/{DIGEST_A}").status_code == 404


def test_a_device_downloads_over_mtls_with_ranges(shared_hub, published, tmp_path):
    archive, envelope = published
    claim = shared_hub.create_claim(labels="release=served")
    device = enroll_device(shared_hub, claim, "release-node", tmp_path)
    # A device reads the releases its desired state names (tests/hostile/test_device_scope.py).
    deployment = textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: served-to-release-node}
        spec:
          selector: {matchLabels: {release: served}}
          modules: [{name: served, release: served@2.0.0}]
        """)
    with shared_hub.client() as operator:
        applied = operator.post(
            "/v1/manifests/apply", json={"files": [{"name": "d.yaml", "text": deployment}]}
        )
        assert applied.status_code == 200, applied.text
    with device.client() as client:
        shown = client.get("/v1/releases/served/2.0.0")
        assert shown.status_code == 200
        assert shown.json()["signature"] == json.loads(envelope.to_json())
        rest = client.get(shown.json()["digest"].join(["/v1/artifacts/", ""]))
        assert rest.status_code == 200 and rest.content == archive.read_bytes()
        tail = client.get(f"/v1/artifacts/{envelope.digest}", headers={"range": "bytes=100-"})
        assert tail.status_code == 206 and tail.content == archive.read_bytes()[100:]
        # Devices read releases; listing and pushing are for operators.
        assert client.get("/v1/releases").status_code == 401
    shared_hub.cli("devices", "revoke", "release-node")
    with device.client() as client:
        refused = client.get(f"/v1/artifacts/{envelope.digest}")
        assert (refused.status_code, refused.json()["message"]) == (403, "device is revoked")
