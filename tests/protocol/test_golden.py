"""Every wire message round-trips through its protocol model and through the
code each side sends and reads it with; the older and newer variants hold
both to the compatibility rule of docs/architecture.md."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import zstandard
from pydantic import BaseModel, ValidationError

from fogline.agent import ConfigApplier, DesiredStore
from fogline.agent.modules import targets_from
from fogline.agent.outbox import OutboxRecord
from fogline.hub._bodies import parse_json_body
from fogline.hub._desired import release_refs, stored_document
from fogline.hub._devices import device_view, report_columns, reported_state
from fogline.hub.releases import module_downgrades
from fogline.hub.rollouts._machine import health_problem
from fogline.hub.routes._device import _report_ack
from fogline.protocol import (
    DESIRED_VERSION,
    DesiredStateError,
    DriftPolicy,
    EnrollResponse,
    ModuleState,
    Report,
    ReportAck,
    ReportedState,
    SyncReport,
    TolerantModel,
    WireModel,
    decode_batch,
    encode_batch,
    parse_desired_state,
)

from ._golden import (
    GOLDEN,
    MODELS,
    agent_report,
    golden,
    golden_files,
    kind_of,
    params,
    read,
)

UTC = dt.UTC


def _is_subtree(part: Any, whole: Any) -> bool:
    """Whether everything in `part` is in `whole` (mappings key by key, lists
    item by item): what a reader kept of a message it was sent."""
    if isinstance(part, dict) and isinstance(whole, dict):
        return all(k in whole and _is_subtree(v, whole[k]) for k, v in part.items())
    if isinstance(part, list) and isinstance(whole, list):
        return len(part) == len(whole) and all(map(_is_subtree, part, whole))
    return bool(part == whole)


# -- the models ------------------------------------------------------------------------


def test_every_golden_kind_has_a_model_and_every_model_a_golden_file() -> None:
    kinds = {kind_of(p) for p in GOLDEN.glob("*.json")}
    assert kinds == set(MODELS) | {"telemetry_batch"}


@pytest.mark.parametrize("path", [p for p in params() if kind_of(p.values[0]) in MODELS])
def test_this_versions_message_round_trips_through_its_model(path: Path) -> None:
    model = MODELS[kind_of(path)]
    parsed = model.model_validate_json(path.read_bytes())
    assert json.loads(parsed.model_dump_json(exclude_unset=True)) == read(path)
    assert model.model_validate_json(parsed.model_dump_json()) == parsed


@pytest.mark.parametrize("path", params("newer"))
def test_a_newer_peers_message_is_read_and_its_unknown_fields_dropped(path: Path) -> None:
    model = MODELS.get(kind_of(path))
    if model is None:  # telemetry_batch: see the telemetry tests below
        return
    if issubclass(model, WireModel):
        # What an operator sends stays strict: a newer CLI's field is a 422
        # naming it, never silently dropped.
        with pytest.raises(ValidationError) as caught:
            model.model_validate_json(path.read_bytes())
        assert [e["type"] for e in caught.value.errors()] == ["extra_forbidden"]
        return
    assert issubclass(model, TolerantModel)
    parsed = model.model_validate_json(path.read_bytes())
    kept = json.loads(parsed.model_dump_json(exclude_unset=True))
    assert _is_subtree(kept, read(path)), "only what was sent is kept"
    assert kept != read(path) or kind_of(path) == "desired_state", "something was unknown"


@pytest.mark.parametrize("path", params("older"))
def test_an_older_peers_message_is_read_with_defaults(path: Path) -> None:
    model = MODELS[kind_of(path)]
    parsed = model.model_validate_json(path.read_bytes())
    assert _is_subtree(json.loads(parsed.model_dump_json(exclude_unset=True)), read(path))
    assert _defaults_filled_in(parsed)


def _defaults_filled_in(model: BaseModel) -> bool:
    """Whether some field of `model`, or of a model inside it, was not sent."""
    if model.model_fields_set < set(type(model).model_fields):
        return True
    inner: list[Any] = [getattr(model, name) for name in type(model).model_fields]
    while inner:
        value = inner.pop()
        if isinstance(value, BaseModel):
            if _defaults_filled_in(value):
                return True
        elif isinstance(value, dict):
            inner.extend(value.values())
        elif isinstance(value, list):
            inner.extend(value)
    return False


# -- the desired document: hub writes, agent reads -----------------------------------------


@pytest.mark.parametrize(
    "path", [*params(), *params("older"), *params("newer")], ids=lambda p: p.name
)
def test_the_agent_reads_saves_and_reloads_a_desired_state_with_its_revision(
    path: Path, tmp_path: Path
) -> None:
    if kind_of(path) != "desired_state":
        return
    sent = read(path)
    doc = parse_desired_state(path.read_bytes())
    assert doc.revision == sent["revision"]
    assert doc.document.to_dict() == sent["document"]  # unknown fields kept, so the hash holds
    store = DesiredStore(tmp_path)
    store.save(doc)
    again = store.load()
    assert again is not None and again.revision == doc.revision and again == doc
    asyncio.run(ConfigApplier(tmp_path)(doc))
    written = (tmp_path / "config" / "config.json").read_bytes()
    assert json.loads(written) == sent["document"].get("config", {})
    targets = targets_from(doc.document)
    assert [(t.name, t.version, t.digest) for t in targets] == [
        (m["name"], m["version"], m["digest"]) for m in sent["document"].get("modules", [])
    ]


def test_the_agent_reads_the_typed_fields_of_the_desired_document() -> None:
    doc = parse_desired_state((GOLDEN / "desired_state.json").read_bytes()).document
    assert doc.version == DESIRED_VERSION and doc.corrects_drift
    assert [(c.name, c.priority) for c in doc.deployments] == [
        ("base", 0),
        ("berlin-canary", 10),
    ]
    thermo, web = doc.modules
    assert thermo.allow_downgrade and not web.allow_downgrade
    assert web.env == {"LOG_LEVEL": "info"} and web.config == {"debug": False, "port": 8080}
    assert doc.release_key_scopes == {"web-team": ["web-*"]} and set(doc.release_keys) == {
        "ci",
        "web-team",
    }
    assert doc.pipelines[0]["name"] == "temperatures" and doc.rollback is None
    rollback = parse_desired_state((GOLDEN / "desired_state.rollback.json").read_bytes())
    assert rollback.document.rollback is not None
    assert all(t.allow_downgrade for t in targets_from(rollback.document))


def test_an_older_hubs_document_reads_with_defaults() -> None:
    doc = parse_desired_state((GOLDEN / "desired_state.older.json").read_bytes()).document
    assert doc.deployments == [] and doc.release_key_scopes == {} and doc.rollback is None
    assert not doc.modules[0].allow_downgrade and doc.modules[0].env == {}


def test_a_newer_hubs_drift_policy_is_kept_as_text_and_only_reports() -> None:
    doc = parse_desired_state((GOLDEN / "desired_state.newer.json").read_bytes()).document
    assert doc.drift == "correct-and-alert" and not isinstance(doc.drift, DriftPolicy)
    assert not doc.corrects_drift
    assert doc.model_extra == {"schedule": {"maintenance": "Sun 02:00"}}


def test_a_document_of_a_newer_major_version_is_refused_with_its_revision() -> None:
    sent = golden("desired_state.v2.json")
    with pytest.raises(DesiredStateError, match="document version 2 is newer") as caught:
        parse_desired_state((GOLDEN / "desired_state.v2.json").read_bytes())
    assert caught.value.revision == sent["revision"]


@pytest.mark.parametrize(
    ("change", "refused_with_revision"),
    [
        (lambda d: d["document"]["config"].update(x=1), False),  # damaged: hash differs
        (lambda d: d["document"]["modules"][0].pop("digest"), False),
        (lambda d: d.pop("revision"), False),
    ],
)
def test_a_damaged_desired_state_is_refused_without_a_revision(
    change: Any, refused_with_revision: bool
) -> None:
    sent = golden("desired_state.json")
    change(sent)
    with pytest.raises(DesiredStateError) as caught:
        parse_desired_state(orjson.dumps(sent))
    assert (caught.value.revision is not None) is refused_with_revision


def test_an_intact_document_that_does_not_parse_is_refused_naming_the_field() -> None:
    sent = golden("desired_state.json")
    sent["document"]["modules"][0]["allowDowngrade"] = "yes"
    sent["revision"] = stored_revision(sent["document"])
    with pytest.raises(DesiredStateError, match=r"modules\.0\.allowDowngrade") as caught:
        parse_desired_state(orjson.dumps(sent))
    assert caught.value.revision == sent["revision"]


def stored_revision(document: dict[str, Any]) -> str:
    from fogline.protocol import revision_of

    return revision_of(document)


def test_the_hub_reads_its_stored_documents_through_the_contract() -> None:
    document = golden("desired_state.json")["document"]
    parsed = stored_document(document)
    assert parsed is not None and parsed.to_dict() == document
    assert [r["name"] for r in release_refs(document)] == ["thermo", "web-app"]
    older = golden("desired_state.older.json")["document"]
    assert module_downgrades(document, older) == {}
    assert module_downgrades(older, {**older, "modules": []}) == {}
    lower = json.loads(json.dumps(document))
    lower["modules"][0]["version"] = "1.4.0"
    assert module_downgrades(document, lower) == {"thermo": ("1.5.0", "1.4.0")}


# -- the report: agent writes, hub reads -------------------------------------------------


def test_the_agent_sends_the_golden_report(tmp_path: Path) -> None:
    report = asyncio.run(agent_report(tmp_path))
    # HubLink.call sends model_dump_json(); version 1 is not written.
    assert json.loads(report.model_dump_json()) == golden("report.json")


@pytest.mark.parametrize("variant", ["", "older", "newer"])
def test_the_hub_stores_and_shows_what_the_node_reported(variant: str) -> None:
    # report.json: report.health.json is the same report with a health block.
    [path] = [
        p for p in golden_files(variant) if p.name in ("report.json", f"report.{variant}.json")
    ]
    sent = read(path)
    report = parse_json_body(Report, path.read_bytes())  # the hub's body parser
    stored = report_columns(report, dt.datetime.now(UTC))["reported"]
    known = {
        k: v for k, v in {"outbox": sent.get("outbox"), "modules": sent.get("modules")}.items()
    }
    if variant == "newer":
        assert "boot_id" not in json.dumps(stored) and "health_score" not in stored["modules"]
        assert stored["modules"]["modules"]["gpu-infer"]["state"] == "degraded"
        assert _is_subtree(stored, known)
    else:
        assert stored["modules"] == sent["modules"]  # as sent, no defaults added
        # The outbox as the hub always stored it: without nulls, defaults filled in.
        assert _is_subtree(
            {k: v for k, v in sent["outbox"].items() if v is not None}, stored["outbox"]
        )
        assert None not in stored["outbox"].values()
    shown = reported_state(stored)
    assert json.loads(shown.model_dump_json(exclude_unset=True)) == stored


def test_the_rollout_gate_judges_the_protocols_states() -> None:
    stored = report_columns(Report.model_validate(golden("report.json")), dt.datetime.now(UTC))[
        "reported"
    ]
    assert health_problem(stored) == "module web-app is crash-loop"
    newer = report_columns(
        Report.model_validate(golden("report.newer.json")), dt.datetime.now(UTC)
    )["reported"]
    del newer["modules"]["modules"]["web-app"]
    del newer["modules"]["updates"]["web-app"]
    # A state this hub does not know is not counted as unhealthy.
    assert health_problem(newer) is None
    assert newer["modules"]["modules"]["gpu-infer"]["state"] not in list(ModuleState)


def test_a_report_of_a_newer_major_version_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Report.model_validate({**golden("report.json"), "version": 2})
    [error] = caught.value.errors()
    assert error["loc"] == ("version",) and "newer than this hub reads" in error["msg"]


def test_the_hubs_report_ack_is_the_golden_one() -> None:
    ca_key_id = golden("report_ack.json")["ca_key_id"]
    assert json.loads(_report_ack(10.0, ca_key_id)) == golden("report_ack.json")
    assert ReportAck.model_validate_json(_report_ack(10.0, ca_key_id)).ca_key_id == ca_key_id
    # An older hub's ack names no CA: the agent then renews on age alone.
    assert ReportAck.model_validate(golden("report_ack.older.json")).ca_key_id is None


def test_the_hub_shows_a_device_as_the_golden_view() -> None:
    sent = golden("device_view.json")
    row = SimpleNamespace(
        id=sent["id"],
        name=sent["name"],
        labels={"site": "berlin"},
        platform_labels={"fogline.dev/os": "linux", "fogline.dev/arch": "arm64"},
        reported_labels=sent["reported_labels"],
        revoked_at=None,
        enrolled_at=dt.datetime(2026, 12, 1, 10, 5, tzinfo=UTC),
        last_seen=dt.datetime(2026, 12, 7, 9, 59, 58, tzinfo=UTC),
        facts=golden("report.json")["facts"],
        claim_id=sent["claim_id"],
        cert_not_after=dt.datetime(2027, 12, 1, 10, 5, tzinfo=UTC),
        reported=sent["reported"],
        health=sent["health"],
    )
    now = dt.datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    view = device_view(row, now, offline_after_s=30.0)  # type: ignore[arg-type]
    view = view.model_copy(update={"sync": SyncReport.model_validate(sent["sync"])})
    assert json.loads(view.model_dump_json()) == sent


def test_a_stored_report_that_does_not_parse_shows_as_empty() -> None:
    # A hub before the typed contract stored `modules` unchecked.
    assert reported_state({"modules": {"modules": {"a": {"state": 5}}}}) == ReportedState()


# -- enrollment, errors, telemetry ---------------------------------------------------------


@pytest.mark.parametrize("variant", ["", "older", "newer"])
def test_the_agent_reads_every_enrollment_answer(variant: str) -> None:
    [path] = [p for p in golden_files(variant) if kind_of(p) == "enroll_response"]
    answer = EnrollResponse.model_validate_json(path.read_bytes())  # as HubLink parses it
    assert answer.release_keys == golden("enroll_response.json")["release_keys"]
    expected_scopes = {} if variant == "older" else {"web-team": ["web-*"]}
    assert answer.release_key_scopes == expected_scopes


def _decompressed(data: bytes) -> Any:
    return json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(data))


@pytest.mark.parametrize("variant", ["", "newer"])
def test_telemetry_batches_round_trip_between_the_uplink_and_the_hub(variant: str) -> None:
    [path] = [p for p in golden_files(variant) if kind_of(p) == "telemetry_batch"]
    sent = read(path)
    data = zstandard.ZstdCompressor().compress(path.read_bytes())
    records = decode_batch(data, max_decompressed=1 << 20)  # as the hub reads it
    assert [r.payload for r in records] == [r["payload"] for r in sent["records"]]
    outbox = [
        OutboxRecord(r.seq, r.stream, r.priority, r.created, r.expires, orjson.dumps(r.payload))
        for r in records
    ]
    assert _decompressed(encode_batch(outbox)) == golden("telemetry_batch.json")


def test_the_agent_reads_the_sensors_block_of_the_desired_document() -> None:
    doc = parse_desired_state((GOLDEN / "desired_state.sensors.json").read_bytes()).document
    assert doc.sensors is not None
    assert doc.sensors.ingest_digests == (
        "09fbc8fa4f292ff0ae5b7112a0118cd81699c616ec3370cffde9acb54b7f2e91",
    )
    [user] = doc.sensors.mqtt_users
    assert user.username == "press-7" and user.password_hash.startswith("$7$10000$")


def test_a_restart_request_reaches_the_agent_and_its_honouring_the_hub() -> None:
    # desired_state.restart.json: desired_state.json with the hub's restart
    # request on web-app; report.restart.json: report.json with thermo's
    # request generation 2 honoured (hub/_restart_healing.py).
    doc = parse_desired_state((GOLDEN / "desired_state.restart.json").read_bytes()).document
    assert [(m.name, m.restart_generation) for m in doc.modules] == [
        ("thermo", 0),
        ("web-app", 2),
    ]
    # Documents without a request keep the revision they always had.
    plain = parse_desired_state((GOLDEN / "desired_state.json").read_bytes()).document
    assert "restartGeneration" not in json.dumps(plain.to_dict())
    sent = golden("report.restart.json")
    report = parse_json_body(Report, (GOLDEN / "report.restart.json").read_bytes())
    stored = report_columns(report, dt.datetime.now(UTC))["reported"]
    assert stored["modules"]["modules"]["thermo"]["restart_generation"] == 2
    assert stored["modules"] == sent["modules"]
    # Not written while 0: the golden report of a node never asked is unchanged.
    assert "restart_generation" not in json.dumps(golden("report.json"))


@pytest.mark.parametrize("value", [-1, 2**53 + 1, True, "1", 1.5])
def test_a_restart_generation_out_of_bounds_is_refused_naming_the_field(value: Any) -> None:
    sent = golden("report.restart.json")
    sent["modules"]["modules"]["thermo"]["restart_generation"] = value
    with pytest.raises(ValidationError) as caught:
        Report.model_validate_json(json.dumps(sent))
    assert caught.value.errors()[0]["loc"][-1] == "restart_generation"
    document = golden("desired_state.restart.json")["document"]
    document["modules"][1]["restartGeneration"] = value
    with pytest.raises(DesiredStateError, match=r"modules\.1\.restartGeneration"):
        parse_desired_state(
            orjson.dumps({"revision": stored_revision(document), "document": document})
        )
