"""Full-jitter exponential backoff: growth, cap, jitter range, reset."""

import pytest

from fogline.agent.uplink import Backoff


def test_ceilings_grow_by_the_multiplier_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=5.0, multiplier=2.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff.attempt == 7


def test_delays_are_drawn_uniformly_below_the_ceiling() -> None:
    draws = iter([0.0, 0.25, 0.5])
    backoff = Backoff(initial_s=1.0, max_s=100.0, multiplier=3.0, rand=lambda: next(draws))
    assert [backoff.next_delay() for _ in range(3)] == [0.0, 0.75, 4.5]


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(initial_s=0.5, max_s=60.0, rand=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert (backoff.attempt, backoff.next_delay()) == (0, 0.5)


def test_a_long_outage_stays_at_the_cap_without_overflow() -> None:
    backoff = Backoff(initial_s=0.1, max_s=30.0, multiplier=10.0, rand=lambda: 1.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 30.0


def test_a_misbehaving_random_cannot_make_a_negative_or_oversized_delay() -> None:
    assert Backoff(initial_s=1.0, rand=lambda: -3.0).next_delay() == 0.0
    assert Backoff(initial_s=1.0, rand=lambda: 7.0).next_delay() == 1.0


def test_retry_after_is_a_floor_under_the_jittered_draw() -> None:
    draws = iter([0.0, 1.0, 0.5])
    backoff = Backoff(initial_s=1.0, max_s=30.0, rand=lambda: next(draws))
    assert backoff.next_delay(retry_after_s=7.0) == 7.0  # never earlier than asked
    assert backoff.next_delay(retry_after_s=7.0) == 7.0 + 2.0  # still spread
    assert backoff.next_delay(retry_after_s=0.0) == 2.0  # "now": the usual draw


def test_retry_after_is_bounded_by_max_s() -> None:
    backoff = Backoff(initial_s=1.0, max_s=30.0, rand=lambda: 0.0)
    assert backoff.next_delay(retry_after_s=86400.0) == 30.0
    assert backoff.next_delay(retry_after_s=float("inf")) == 30.0
    assert backoff.next_delay(retry_after_s=-5.0) == 0.0
    assert backoff.next_delay(retry_after_s=float("nan")) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0},
        {"initial_s": float("nan")},
        {"max_s": float("inf")},
        {"initial_s": 2.0, "max_s": 1.0},
        {"multiplier": 0.5},
    ],
)
def test_nonsense_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]
