"""The rollout policy schema, state table and wave logic, without a database."""

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline._statetable import MissingTransitionError
from fogline.hub.rollouts._machine import (
    TRANSITIONS,
    DeviceState,
    Event,
    Observation,
    State,
    Step,
    Tally,
    can_fire,
    decide,
    health_problem,
    judge_device,
    next_state,
)
from fogline.hub.rollouts._policy import (
    DEFAULT_POLICY,
    RolloutPolicy,
    parse_rollout_policy,
    wave_bounds,
)
from fogline.manifest import BlockError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
POLICY = parse_rollout_policy(
    {"waves": ["10%", "100%"], "bake": "10s", "maxFailures": 1, "waveTimeout": "60s"}
)


def seen(revision="new", ok=True, problem=None, online=True):
    return Observation(revision, ok, None if ok else "boom", problem, online)


def test_policy_parses_percentages_counts_and_durations():
    policy = parse_rollout_policy(
        {
            "waves": ["1%", 5, "50%", "100%"],
            "bake": "2m",
            "successThreshold": "95%",
            "maxFailures": "10%",
            "onFailure": "rollback",
            "waveTimeout": "30m",
        }
    )
    assert policy.bake_s == 120 and policy.success_threshold == 0.95
    assert policy.on_failure == "rollback" and policy.wave_timeout_s == 1800
    assert RolloutPolicy.from_json(policy.to_json()) == policy
    assert parse_rollout_policy({}) == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"waves": []}, ("waves",)),
        ({"waves": "10%"}, ("waves",)),
        ({"waves": ["0%"]}, ("waves", 0)),
        ({"waves": ["50%", "10%"]}, ("waves", 1)),
        ({"waves": [True]}, ("waves", 0)),
        ({"waves": ["1%"] * 21}, ("waves",)),
        ({"bake": "forever"}, ("bake",)),
        ({"successThreshold": 1.5}, ("successThreshold",)),
        ({"maxFailures": "200%"}, ("maxFailures",)),
        ({"onFailure": "explode"}, ("onFailure",)),
        ({"waveTimeout": "0s"}, ("waveTimeout",)),
        ({"surprise": 1}, ("surprise",)),
    ],
)
def test_bad_policies_are_refused_at_their_path(block, path):
    with pytest.raises(BlockError) as caught:
        parse_rollout_policy(block)
    assert caught.value.path == path


def test_wave_bounds_round_up_drop_empty_waves_and_always_reach_everyone():
    policy = parse_rollout_policy({"waves": ["1%", "10%", "50%"]})
    assert wave_bounds(policy, 5) == [1, 3, 5]
    assert wave_bounds(policy, 1000) == [10, 100, 500, 1000]
    assert wave_bounds(parse_rollout_policy({"waves": [2, 100]}), 3) == [2, 3]
    assert wave_bounds(DEFAULT_POLICY, 0) == [0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=1, max_size=5).map(sorted), st.integers(0, 3000))
def test_wave_bounds_are_increasing_and_end_at_total(percents, total):
    bounds = wave_bounds(parse_rollout_policy({"waves": [f"{p}%" for p in percents]}), total)
    assert bounds[-1] == total
    assert all(a < b for a, b in itertools.pairwise(bounds))


def test_final_states_have_no_way_out_and_active_ones_can_always_abort():
    final = {State.COMPLETED, State.ROLLED_BACK, State.ABORTED, State.SUPERSEDED}
    assert not {source for source, _ in TRANSITIONS} & final
    for state in (State.RUNNING, State.PAUSED):
        assert next_state(state, Event.ABORT) is State.ABORTED
        assert next_state(state, Event.SUPERSEDE) is State.SUPERSEDED
    assert not can_fire(State.COMPLETED, Event.RESUME)  # the engine answers 409
    with pytest.raises(MissingTransitionError, match="rollout: no transition from COMPLETED"):
        next_state(State.COMPLETED, Event.RESUME)


def test_device_succeeds_only_after_baking_healthy_and_online():
    judge = lambda since, obs, now: judge_device(  # noqa: E731
        DeviceState.UPDATING, "new", T0, since, obs, POLICY, now
    )
    first = judge(None, seen(), T0)
    assert first.state is DeviceState.UPDATING and first.healthy_since == T0
    assert judge(T0, seen(), T0 + dt.timedelta(seconds=10)).state is DeviceState.SUCCEEDED
    assert (
        judge(T0, seen(online=False), T0 + dt.timedelta(seconds=10)).state is DeviceState.UPDATING
    )


def test_device_failures_refusal_unhealthy_and_timeout_while_online():
    later = T0 + dt.timedelta(seconds=61)
    assert (
        judge_device(DeviceState.UPDATING, "new", T0, None, seen(ok=False), POLICY, T0).state
        is DeviceState.FAILED
    )
    sick = seen(problem="module web is crash-loop")
    verdict = judge_device(DeviceState.UPDATING, "new", T0, T0, sick, POLICY, T0)
    assert verdict.state is DeviceState.FAILED and "crash-loop" in (verdict.reason or "")
    stuck = judge_device(DeviceState.UPDATING, "new", T0, None, seen("old"), POLICY, later)
    assert stuck.state is DeviceState.FAILED
    away = judge_device(
        DeviceState.UPDATING, "new", T0, None, seen("old", online=False), POLICY, later
    )
    assert away.state is DeviceState.SKIPPED
    back = judge_device(DeviceState.SKIPPED, "new", T0, T0, seen(), POLICY, later)
    assert back.state is DeviceState.SUCCEEDED


def test_health_problem_reads_modules_and_updates_and_ignores_junk():
    assert health_problem(None) is None
    assert health_problem({"modules": "junk"}) is None
    assert health_problem({"modules": {"modules": {"a": {"state": "healthy"}}}}) is None
    assert "unhealthy" in (
        health_problem({"modules": {"modules": {"a": {"state": "unhealthy"}}}}) or ""
    )
    assert "update of b" in (
        health_problem({"modules": {"updates": {"b": {"state": "failed"}}}}) or ""
    )


def gate(current, failed_total=0, accepted=0, wave=0, last=1, total=10, gate_accepted=False):
    return decide(
        POLICY,
        wave=wave,
        last_wave=last,
        current=current,
        failed_total=failed_total,
        accepted_failures=accepted,
        devices_total=total,
        gate_accepted=gate_accepted,
    )


def test_wave_gate_waits_advances_completes_and_fails():
    assert gate(Tally(updating=1, succeeded=1)).step is Step.WAIT
    assert gate(Tally(succeeded=1, skipped=1)).step is Step.NEXT_WAVE
    assert gate(Tally(succeeded=9), wave=1).step is Step.COMPLETE
    assert gate(Tally(updating=5), failed_total=2).step is Step.FAIL  # over maxFailures at once
    low = gate(Tally(succeeded=1, failed=1), failed_total=1)
    assert low.step is Step.FAIL and "successThreshold" in low.reason
    # After an operator's resume, the accepted failures and gate no longer stop it.
    resumed = gate(Tally(succeeded=1, failed=1), failed_total=2, accepted=2, gate_accepted=True)
    assert resumed.step is Step.NEXT_WAVE
    assert gate(Tally()).step is Step.NEXT_WAVE  # an empty wave passes


def test_a_wave_whose_devices_were_all_offline_does_not_pass_by_itself():
    unseen = gate(Tally(skipped=4))
    assert unseen.step is Step.FAIL and "all 4 device(s) were offline" in unseen.reason
    assert gate(Tally(skipped=4), wave=1).step is Step.FAIL  # the last wave too: no "completed"
    assert gate(Tally(skipped=4), gate_accepted=True).step is Step.NEXT_WAVE  # operator resumed
    assert gate(Tally(succeeded=1, skipped=9)).step is Step.NEXT_WAVE  # one healthy is evidence


def test_without_spec_rollout_there_is_no_gate_and_the_policy_says_so():
    assert DEFAULT_POLICY.gated is False and POLICY.gated is True
    assert "onFailure" not in DEFAULT_POLICY.summary() and "no health gate" in (
        DEFAULT_POLICY.summary()
    )
    assert RolloutPolicy.from_json(DEFAULT_POLICY.to_json()) == DEFAULT_POLICY
    # Stored before `gated` existed: the default is recognised, the rest is gated.
    old = {k: v for k, v in DEFAULT_POLICY.to_json().items() if k != "gated"}
    assert RolloutPolicy.from_json(old).gated is False
    explicit = {k: v for k, v in POLICY.to_json().items() if k != "gated"}
    assert RolloutPolicy.from_json(explicit).gated is True
    # Every device failed, none succeeded: the ungated wave still ends.
    everyone_failed = Tally(failed=3)
    decision = decide(
        DEFAULT_POLICY,
        wave=0,
        last_wave=0,
        current=everyone_failed,
        failed_total=3,
        accepted_failures=0,
        devices_total=3,
        gate_accepted=False,
    )
    assert decision.step is Step.COMPLETE
    assert next_state(State.RUNNING, Event.LAST_WAVE_ENDED) is State.COMPLETED
