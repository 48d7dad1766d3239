"""TLS session tickets shared by hub processes (issue #18, "Reconnecting
fleets"): a device that reconnects resumes its session on whichever worker
or replica accepts it, tickets rotate with their period, and the hub can
issue none (--no-tls-tickets)."""

import logging
import shutil
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fogline.hub import _tickets
from fogline.hub._tickets import (
    TicketKeys,
    TicketSecretError,
    load_or_create_ticket_secret,
    share_ticket_key,
    ticket_key,
)
from fogline.hub._tls import ReloadingServerTls
from fogline.hubclient import ResumingContext, resuming_client_context
from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.processes import HubProcess, start_hub, wait_until
from tests.support.tls_files import make_server_tls

RECONNECTS = 20


def device_context(hub: HubProcess, device: TestDevice) -> ResumingContext:
    context = resuming_client_context(hub.ca)
    context.load_cert_chain(str(device.cert_path), str(device.key_path))
    return context


def report_on_new_connection(url: str, context: ssl.SSLContext) -> int:
    """POST a report on a connection of its own (closed after the answer)."""
    with httpx.Client(base_url=url, verify=context, timeout=10) as client:
        return client.post("/v1/report", json={"facts": FACTS, "labels": {}}).status_code


def healthz_on_new_connection(url: str, context: ssl.SSLContext) -> int:
    with httpx.Client(base_url=url, verify=context, timeout=10) as client:
        return client.get("/healthz").status_code


@pytest.fixture(scope="module")
def workers_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = start_hub(tmp_path_factory.mktemp("tickets") / "hub", extra_args=["--workers", "2"])
    try:
        yield hub
    finally:
        hub.stop()


# -- The secret and the keys ---------------------------------------------------------


def test_the_ticket_secret_is_created_0600_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "tls" / "ticket-secret"
    first = load_or_create_ticket_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_ticket_secret(path) == first and len(first) == 32
    assert [p.name for p in path.parent.iterdir()] == ["ticket-secret"]  # no temp file left


def test_a_ticket_secret_file_that_holds_no_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ticket-secret"
    path.write_text("not hex at all\n")
    with pytest.raises(TicketSecretError, match="expected 64 hex digits"):
        load_or_create_ticket_secret(path)


def test_ticket_keys_differ_by_period_and_by_secret_and_name_them_differently() -> None:
    one, two = ticket_key(b"a" * 32, 7), ticket_key(b"a" * 32, 8)
    assert len(one) == 80 and one != two and one[:16] != two[:16]
    assert ticket_key(b"b" * 32, 7) != one
    clock = iter([3599.0, 3600.0]).__next__
    keys = TicketKeys(b"a" * 32, 3600, clock=clock)
    assert (keys.period(), keys.period()) == (0, 1)


# -- The ctypes guard ---------------------------------------------------------------


def test_the_hub_keeps_its_own_keys_when_the_context_layout_does_not_check_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pointer that is not the context's own SSL_CTX (here: another
    context's, with other options) is never written through: one warning,
    and the context still serves."""
    other = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    other_pointer = _tickets._ctx_pointer(other)
    monkeypatch.setattr(_tickets, "_ctx_pointer", lambda context: other_pointer)
    monkeypatch.setattr(_tickets, "_warned", False)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with caplog.at_level(logging.WARNING, logger="fogline.hub"):
        assert share_ticket_key(context, ticket_key(b"k" * 32, 1)) is False
        assert share_ticket_key(context, ticket_key(b"k" * 32, 1)) is False
    warnings = [r for r in caplog.records if "tls_tickets_not_shared" in r.getMessage()]
    assert len(warnings) == 1


def test_a_python_whose_ssl_context_is_not_laid_out_as_expected_is_not_touched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_tickets, "_layout_known", lambda: False)
    monkeypatch.setattr(_tickets, "_warned", False)
    assert share_ticket_key(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), bytes(80)) is False


def test_a_reloading_context_serves_with_shared_keys_and_without_tickets(tmp_path: Path) -> None:
    files = make_server_tls(tmp_path)
    cert, key, ca = files.cert, files.key, files.ca
    keys = TicketKeys(b"s" * 32, 60)
    shared = ReloadingServerTls(cert, key, ca, tickets=keys).context()
    assert shared.num_tickets > 0 and not shared.options & ssl.OP_NO_TICKET
    off = ReloadingServerTls(cert, key, ca, tickets=keys, issue_tickets=False).context()
    assert off.num_tickets == 0 and off.options & ssl.OP_NO_TICKET


# -- Real hubs ----------------------------------------------------------------------


def test_the_hub_writes_its_ticket_secret_0600(workers_hub: HubProcess) -> None:
    path = workers_hub.data_dir / "tls" / "ticket-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32


def test_a_device_reconnecting_to_two_workers_resumes_almost_every_time(
    workers_hub: HubProcess, tmp_path: Path
) -> None:
    """Each report on a new connection; a worker that did not issue the
    ticket resumes it too (per-worker keys resume about half of them)."""
    claim = workers_hub.create_claim(max_uses=1)
    device = enroll_device(workers_hub, claim, "reconnecting", tmp_path)
    context = device_context(workers_hub, device)
    for _ in range(RECONNECTS):
        assert report_on_new_connection(workers_hub.url, context) == 200
    assert context.connections == RECONNECTS
    assert context.resumed >= RECONNECTS - 2, context.resumed  # the first is a full handshake


def test_a_session_issued_by_one_replica_resumes_on_another(tmp_path: Path) -> None:
    """Replicas that share the data directory's ticket secret (copied, as
    docs/operations.md says) resume each other's tickets: the device
    alternates between them, and every connection after the first resumes."""
    first = start_hub(tmp_path / "a" / "hub")
    try:
        shutil.copytree(
            first.data_dir, tmp_path / "b" / "hub", ignore=shutil.ignore_patterns("hub.db*")
        )
        second = start_hub(tmp_path / "b" / "hub")
        try:
            context = resuming_client_context(first.ca)
            for index in range(10):
                url = (first, second)[index % 2].url
                assert healthz_on_new_connection(url, context) == 200
            assert (context.connections, context.resumed) == (10, 9)
        finally:
            second.stop()
    finally:
        first.stop()


def test_sessions_resume_after_the_ticket_key_rotates(tmp_path: Path) -> None:
    """Period of 2 s: a ticket from the last period costs one full
    handshake (no error), and the next connections resume again.

    Each period's connections start right after its boundary, so none of them
    straddles one: a connection the hub accepted just after a boundary gets a
    ticket under the new key, and the next one would rightly resume."""
    period_s = 2.0
    hub = start_hub(tmp_path / "hub", extra_args=["--tls-ticket-period", "2s"])
    try:
        context = resuming_client_context(hub.ca)

        def period() -> int:
            return int(time.time() // period_s)

        outcomes: dict[int, list[bool]] = {}  # period -> resumed, per connection
        for _attempt in range(8):  # a batch cut by a boundary (a slow machine) is not counted
            if len(outcomes) >= 3:
                break
            last = period()
            wait_until(lambda last=last: period() != last, 5, "the next ticket period")
            current, resumed = period(), []
            for _ in range(3):
                before = context.resumed
                assert healthz_on_new_connection(hub.url, context) == 200
                resumed.append(context.resumed > before)
            if period() == current:
                outcomes[current] = resumed
        assert len(outcomes) >= 3, outcomes
        # The first connection of a period offers the last period's ticket:
        # unknown to the new key, a full handshake; then each resumes.
        assert all(resumed == [False, True, True] for resumed in outcomes.values()), outcomes
    finally:
        hub.stop()
