"""The audit trail an auditor accepts (issue #14), against real hub processes:
every state-changing route in the OpenAPI document leaves exactly one entry,
refusals too; entries name the actor, the source address, the outcome and
before/after; `fogline audit verify` passes a whole chain and names an
edited, deleted or reordered entry; 20 concurrent writers never fork it."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.backup import hub_backup, hub_restore
from tests.support.device import enroll_device
from tests.support.modules import write_module
from tests.support.processes import HubProcess, start_hub, start_replica, tls

# Non-GET routes that write no entry, and why each changes nothing an
# auditor follows. A route missing from both this list and the audited ones
# fails test_every_state_changing_route_declares_how_it_is_audited.
NOT_AUDITED = {
    ("post", "/v1/manifests/plan"),  # computes a plan, changes nothing
    ("post", "/v1/report"),  # device data: its own state, thousands a second
    ("post", "/v1/telemetry"),  # device data, stored once per (device, seq)
}
# Path parameters the walk fills in: names that exist nowhere (a refusal).
_PARAMS = {"action": "pause"}


def _operations(hub: HubProcess) -> Iterator[tuple[str, str, dict[str, Any]]]:
    with hub.client() as client:
        document = client.get("/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("post", "put", "patch", "delete"):
                yield method, path, operation


def _head(hub: HubProcess) -> dict[str, Any]:
    with hub.client() as client:
        return dict(client.get("/v1/audit/head").json())


def _after(hub: HubProcess, seq: int, **params: Any) -> list[dict[str, Any]]:
    with hub.client() as client:
        response = client.get("/v1/audit", params={"after": seq, **params})
    assert response.status_code == 200, response.text
    return list(response.json())


def _verify(hub: HubProcess, *extra: str) -> Any:
    return hub.cli("audit", "verify", *extra, check=False)


@pytest.fixture(scope="module")
def audited_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = start_hub(tmp_path_factory.mktemp("audit") / "hub")
    try:
        yield process
    finally:
        process.stop()


def test_every_state_changing_route_declares_how_it_is_audited(audited_hub: HubProcess) -> None:
    exempt = set()
    for method, path, operation in _operations(audited_hub):
        action, reason = operation.get("x-audit-action"), operation.get("x-audit-exempt")
        assert (action is None) != (reason is None), f"{method} {path}: audited or exempt, not both"
        if reason is not None:
            exempt.add((method, path))
    assert exempt == NOT_AUDITED


def test_every_audited_route_leaves_exactly_one_entry_also_when_refused(
    audited_hub: HubProcess,
) -> None:
    walked = 0
    for method, path, operation in _operations(audited_hub):
        if (method, path) in NOT_AUDITED:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: _PARAMS.get(m.group(1), "no-such-thing"), path)
        before = _head(audited_hub)["seq"]
        with audited_hub.client() as client:
            response = client.request(method.upper(), url, json={})
        entries = _after(audited_hub, before)
        assert len(entries) == 1, f"{method} {path} ({response.status_code}) wrote {entries}"
        (entry,) = entries
        expected = operation["x-audit-action"].format_map(_PARAMS)
        assert entry["action"] == expected, f"{method} {path}: {entry}"
        assert entry["source"] == "127.0.0.1"
        if response.status_code >= 400:
            assert entry["outcome"] == "refused", entry
            assert entry["detail"]["status"] == response.status_code
            assert entry["detail"]["reason"] == response.json()["message"]
        else:
            assert entry["outcome"] == "ok", entry
        walked += 1
    assert walked >= 12  # every audited route of today's API, at least


def test_a_refusal_names_the_caller_its_address_and_the_reason(audited_hub: HubProcess) -> None:
    before = _head(audited_hub)["seq"]
    # From another loopback address: the entry says where the request came from.
    transport = httpx.HTTPTransport(verify=tls(audited_hub.ca), local_address="127.0.0.2")
    with httpx.Client(base_url=audited_hub.url, transport=transport, timeout=10) as client:
        bearer = {"authorization": f"Bearer {audited_hub.token}"}
        missing = client.post("/v1/devices/ghost/revoke", headers=bearer)
        wrong = client.post("/v1/devices/ghost/revoke", headers={"authorization": "Bearer x.y"})
    assert (missing.status_code, wrong.status_code) == (404, 401)
    first, second = _after(audited_hub, before)
    assert (first["actor"], first["source"], first["outcome"]) == ("admin", "127.0.0.2", "refused")
    assert first["action"] == "device.revoke" and first["target"] == "ghost"
    assert "ghost" in first["detail"]["reason"] and first["detail"]["status"] == 404
    assert (second["actor"], second["outcome"], second["detail"]["status"]) == (
        "anonymous",
        "refused",
        401,
    )


def test_changes_name_actor_target_and_before_after(
    audited_hub: HubProcess, tmp_path: Path
) -> None:
    hub = audited_hub
    start = _head(hub)["seq"]
    claim = hub.create_claim(labels="site=a")
    device = enroll_device(hub, claim, "audited-1", tmp_path)
    with hub.client() as client:
        labelled = client.patch(
            "/v1/devices/audited-1/labels", json={"set": {"line": "2"}, "remove": ["site"]}
        )
        assert labelled.status_code == 200, labelled.text
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata: {name: audited-web}\n"
        "spec:\n  selector: {matchLabels: {line: '2'}}\n"
    )
    hub.cli("apply", "-f", str(manifest))
    hub.cli("delete", "deployment", "audited-web")
    hub.cli("devices", "revoke", device.name)
    entries = {e["action"]: e for e in _after(hub, start)}

    created = entries["claim.create"]
    assert created["actor"] == "admin" and created["detail"]["labels"] == {"site": "a"}
    assert claim.split(".", 1)[-1] not in json.dumps(created)  # never the secret
    enrolled = entries["device.enroll"]
    assert (enrolled["actor"], enrolled["target"]) == ("device:audited-1", "audited-1")
    label = entries["device.label"]
    assert label["detail"]["before"] == {"site": "a"}
    assert label["detail"]["after"] == {"line": "2"}
    applied = entries["apply"]
    assert applied["detail"]["before"] == {"audited-web": None}
    assert applied["detail"]["after"]["audited-web"]["metadata"]["name"] == "audited-web"
    deleted = entries["deployment.delete"]
    assert deleted["actor"] == "admin"  # once logged as "operator", whoever it was
    assert deleted["detail"]["before"]["audited-web"]["spec"]["selector"] == {
        "matchLabels": {"line": "2"}
    }
    assert deleted["detail"]["after"] == {"audited-web": None}
    assert entries["device.revoke"]["target"] == "audited-1"
    # The hub's own consequences are entries too: the apply's rollout.
    assert "rollout.start" in entries
    assert _verify(hub).returncode == 0


def test_release_push_repush_key_delete_and_rm_are_entries(
    audited_hub: HubProcess, tmp_path: Path
) -> None:
    hub = audited_hub
    keys = tmp_path / "keys"
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "a1", "--dir", str(keys)).stdout
    )
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "a2", "--dir", str(keys)).stdout
    )
    start = _head(hub)["seq"]
    source = write_module(tmp_path / "src", "1.0.0", 1)
    archive = tmp_path / "web.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(keys / "a1.key"))
    hub.cli("release", "push", str(archive))
    # The same bytes again (--force: the CLI asks the hub): no change, still an action.
    hub.cli("release", "push", "--force", str(archive))
    hub.cli("delete", "releasekey", "a2")
    hub.cli("release", "rm", "web@1.0.0")
    entries = _after(hub, start)
    actions = [(e["action"], e["target"], e["outcome"]) for e in entries]
    assert actions == [
        ("release.push", "web@1.0.0", "ok"),
        ("release.push", "web@1.0.0", "ok"),
        ("releasekey.delete", "releasekey/a2", "ok"),
        ("release.rm", "web@1.0.0", "ok"),
    ]
    first, again = entries[0], entries[1]
    assert (first["detail"]["created"], again["detail"]["created"]) == (True, False)
    assert first["actor"] == "admin" and first["detail"]["digest"].startswith("sha256:")


def test_ls_filters_by_actor_action_and_since_on_the_hub(audited_hub: HubProcess) -> None:
    audited_hub.create_claim()
    with audited_hub.client() as client:
        client.post("/v1/claims/nope/revoke")
    rows = json.loads(
        audited_hub.cli(
            "audit", "ls", "--actor", "admin", "--action", "claim.*", "-o", "json"
        ).stdout
    )
    assert rows and {r["actor"] for r in rows} == {"admin"}
    assert {r["action"] for r in rows} <= {"claim.create", "claim.revoke"}
    assert {r["outcome"] for r in rows} == {"ok", "refused"}
    recent = json.loads(audited_hub.cli("audit", "ls", "--since", "1h", "-o", "json").stdout)
    assert recent and all(r["at"].endswith("Z") for r in recent)
    none = json.loads(
        audited_hub.cli("audit", "ls", "--actor", "device:nobody", "-o", "json").stdout
    )
    assert none == []
    table = audited_hub.cli("audit", "ls", "--action", "claim.revoke", "-o", "table").stdout
    assert "refused" in table and "127.0.0.1" in table
    too_many = audited_hub.cli("audit", "ls", "--limit", "5000", check=False)
    assert too_many.returncode == 2  # bounded page size, a usage error


def test_backup_and_restore_are_in_the_trail_and_the_chain_survives_them(
    hub: HubProcess, tmp_path: Path
) -> None:
    _seed(hub, 2)
    backup = tmp_path / "hub.fogbak"
    made = hub_backup(hub.data_dir, backup, extra=("--no-artifacts",))
    assert made.returncode == 0 and "not in the audit trail" not in made.stderr, made.stderr
    (entry,) = _after(hub, 0, action="hub.backup")
    assert (entry["actor"], entry["source"], entry["target"]) == ("hub", "local", "hub.fogbak")
    assert _verify(hub).returncode == 0
    hub.stop()
    restored = hub_restore(backup, tmp_path / "restored")
    assert restored.returncode == 0 and "not in the audit trail" not in restored.stderr
    again = start_hub(tmp_path / "restored")
    try:
        # The backup holds the chain up to the snapshot; the restore follows it.
        actions = [e["action"] for e in _after(again, 0)]
        assert actions == ["claim.create", "claim.create", "hub.restore"]
        assert _verify(again).returncode == 0
    finally:
        again.stop()


# -- tampering: the test edits the SQLite file under the running hub ----------


def _db(hub: HubProcess) -> sqlite3.Connection:
    return sqlite3.connect(hub.data_dir / "hub.db", timeout=10, isolation_level=None)


def _seed(hub: HubProcess, count: int) -> None:
    for _ in range(count):
        hub.create_claim()


def _fails_naming(hub: HubProcess, seq: int, *extra: str) -> str:
    result = _verify(hub, *extra)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"audit entry {seq}:" in result.stderr, result.stderr
    return str(result.stderr)


def test_verify_passes_a_clean_chain_and_names_an_edited_entry(hub: HubProcess) -> None:
    _seed(hub, 5)
    clean = _verify(hub, "-o", "table")
    assert clean.returncode == 0 and "audit chain intact: 5 entries" in clean.stdout, clean.stdout
    with _db(hub) as db:
        (target,) = db.execute("SELECT target FROM audit_log WHERE seq = 3").fetchone()
        db.execute("UPDATE audit_log SET target = 'someone-else' WHERE seq = 3")
    assert "edited" in _fails_naming(hub, 3)
    with _db(hub) as db:  # put back: whole again, to the byte
        db.execute("UPDATE audit_log SET target = ? WHERE seq = 3", (target,))
    assert _verify(hub).returncode == 0
    with _db(hub) as db:
        db.execute("UPDATE audit_log SET detail = json_set(detail, '$.max_uses', 99) WHERE seq = 2")
    _fails_naming(hub, 2)


def test_verify_names_a_deleted_entry_and_a_cut_tail(hub: HubProcess) -> None:
    _seed(hub, 5)
    with _db(hub) as db:
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    assert "deleted" in _fails_naming(hub, 2)
    hub.stop()
    hub2_dir = hub.data_dir
    with _db(hub) as db:  # the tail: the head row remembers it
        db.execute("DELETE FROM audit_log WHERE seq >= 1")
    hub.start()
    assert hub.data_dir == hub2_dir
    assert "deleted" in _fails_naming(hub, 1)


def test_verify_names_reordered_entries(hub: HubProcess) -> None:
    _seed(hub, 5)
    with _db(hub) as db:  # 2 and 4 trade places
        db.execute("UPDATE audit_log SET seq = -1 WHERE seq = 2")
        db.execute("UPDATE audit_log SET seq = 2 WHERE seq = 4")
        db.execute("UPDATE audit_log SET seq = 4 WHERE seq = -1")
    _fails_naming(hub, 2)


def test_an_anchor_from_audit_head_catches_a_rewritten_chain(hub: HubProcess) -> None:
    _seed(hub, 3)
    anchor = hub.cli("audit", "head", "-o", "table").stdout.strip()
    seq, _, digest = anchor.partition(":")
    assert seq == "3" and len(digest) == 64
    _seed(hub, 2)
    assert _verify(hub, "--anchor", anchor).returncode == 0
    _fails_naming(hub, 3, "--anchor", f"3:{'0' * 64}")
    bad = _verify(hub, "--anchor", "three")
    assert bad.returncode == 2


# -- concurrency: 20 writers, one chain ---------------------------------------


def _hammer(hubs: list[HubProcess], writers: int, each: int) -> None:
    errors: list[str] = []

    def write(index: int) -> None:
        hub = hubs[index % len(hubs)]
        with hub.client() as client:
            for n in range(each):
                ok = client.post("/v1/claims", json={"max_uses": 1, "labels": {"w": str(index)}})
                refused = client.post(f"/v1/claims/none-{index}-{n}/revoke")
                if ok.status_code != 201 or refused.status_code != 404:
                    errors.append(f"{ok.status_code} {refused.status_code} {ok.text}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=110)
    assert not any(t.is_alive() for t in threads) and not errors, errors[:3]


def _chain_is_whole(hub: HubProcess, expected: int) -> None:
    result = _verify(hub, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["entries"] == expected
    seqs = [e["seq"] for e in _after(hub, 0, limit=1000)]
    assert seqs == list(range(1, expected + 1))


def test_twenty_concurrent_writers_keep_one_chain_on_sqlite(hub: HubProcess) -> None:
    _hammer([hub], writers=20, each=5)
    _chain_is_whole(hub, 20 * 5 * 2)


@pytest.mark.postgres
def test_twenty_concurrent_writers_on_two_replicas_keep_one_chain_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    first = start_hub(tmp_path / "hub-a", db_url=postgres_url)
    second = start_replica(first, tmp_path / "hub-b")
    try:
        _hammer([first, second], writers=20, each=5)
        _chain_is_whole(first, 20 * 5 * 2)
    finally:
        second.stop()
        first.stop()
