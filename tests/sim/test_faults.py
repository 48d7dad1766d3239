"""The --faults parser and the fault-injecting transport."""

import asyncio
import random

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.sim import Faults, FaultSpecError, FaultyTransport, Flap, Traffic, parse_faults


def test_every_fault_parses_into_its_field() -> None:
    faults = parse_faults(
        "loss=0.05, latency=50ms,flap=10s/60s,crash=0.01,powerloss=0.1,"
        "health-fail=0.2,health-fail:web@3.0.0=1.0,health-fail:db=0.5"
    )
    assert faults == Faults(
        loss=0.05,
        latency_s=0.05,
        flap=Flap(10.0, 60.0),
        crash_per_s=0.01,
        powerloss=0.1,
        health_fail=0.2,
        health_fail_by_release={"web@3.0.0": 1.0, "db": 0.5},
    )
    # The most specific setting wins.
    assert faults.health_fail_for("web", "3.0.0") == 1.0
    assert faults.health_fail_for("web", "2.0.0") == 0.2
    assert faults.health_fail_for("db", "9.9.9") == 0.5


def test_an_empty_spec_is_a_perfect_world() -> None:
    assert parse_faults("") == Faults()
    assert parse_faults(" , ") == Faults()


@pytest.mark.parametrize(
    ("spec", "bad_item", "why"),
    [
        ("loss=1.5", "loss=1.5", "probability"),
        ("loss=-0.1", "loss=-0.1", "probability"),
        ("loss=lots", "loss=lots", "probability"),
        ("loss", "loss", "KEY=VALUE"),
        ("loss=", "loss=", "KEY=VALUE"),
        ("latency=fast", "latency=fast", "duration"),
        ("flap=10s", "flap=10s", "DOWN/PERIOD"),
        ("flap=60s/10s", "flap=60s/10s", "0 < DOWN < PERIOD"),
        ("jitter=5ms", "jitter=5ms", "unknown fault"),
        ("loss=0.1,loss=0.2", "loss=0.2", "twice"),
        ("health-fail:WEB!=1", "health-fail:WEB!=1", "NAME[@VERSION]"),
        ("crash=0.1,nonsense=1", "nonsense=1", "unknown fault"),
    ],
)
def test_a_bad_item_is_named_with_the_reason(spec: str, bad_item: str, why: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_faults(spec)
    assert info.value.item == bad_item
    assert why in str(info.value)
    assert bad_item in str(info.value)


def test_hostile_sizes_are_refused() -> None:
    with pytest.raises(FaultSpecError, match="longer than"):
        parse_faults("loss=0.1," * 1000)
    with pytest.raises(FaultSpecError, match="more than 64 items"):
        parse_faults(",".join(f"health-fail:m{i}=0.1" for i in range(100)))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_fails_with_a_fault_spec_error(text: str) -> None:
    try:
        faults = parse_faults(text)
    except FaultSpecError as exc:
        assert exc.item  # always names what it refuses
    else:
        assert 0 <= faults.loss <= 1 and 0 <= faults.powerloss <= 1


# -- the transport -------------------------------------------------------------------


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"x" * 1000)


async def _get(transport: FaultyTransport, path: str = "/v1/report") -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, base_url="https://hub") as client:
        response = await client.get(path)
        await response.aread()
        return response


def test_total_loss_fails_every_request_as_a_connect_error() -> None:
    traffic = Traffic()
    transport = FaultyTransport(
        httpx.MockTransport(_ok), Faults(loss=1.0), traffic, rand=random.Random(1)
    )
    for _ in range(5):
        with pytest.raises(httpx.ConnectError, match="lost"):
            asyncio.run(_get(transport))
    assert traffic.requests == 5 and traffic.failed_requests == 5 and traffic.http_bytes == 0


def test_artifact_bytes_are_counted_apart_from_other_traffic() -> None:
    traffic = Traffic()
    transport = FaultyTransport(httpx.MockTransport(_ok), Faults(), traffic, rand=random.Random())
    asyncio.run(_get(transport, "/v1/artifacts/sha256:abc"))
    asyncio.run(_get(transport, "/v1/desired"))
    assert traffic.artifact_bytes == 1000
    assert traffic.bytes_received > 2000  # both bodies plus headers
    assert traffic.bytes_sent > 0 and traffic.failed_requests == 0


def test_a_flapping_link_is_down_only_in_its_window() -> None:
    now = [0.0]
    transport = FaultyTransport(
        httpx.MockTransport(_ok),
        Faults(flap=Flap(10.0, 60.0)),
        Traffic(),
        rand=random.Random(),
        phase_s=5.0,
        clock=lambda: now[0],
    )
    with pytest.raises(httpx.ConnectError, match="link down"):
        asyncio.run(_get(transport))  # 0 + 5 is inside the first 10 s
    now[0] = 20.0
    assert asyncio.run(_get(transport)).status_code == 200
    now[0] = 56.0  # (56 + 5) % 60 = 1: down again
    assert transport.link_down()
