"""Exponential backoff with full jitter, shared by every retry loop of the agent.

Full jitter (a uniform wait between 0 and the current ceiling) keeps a fleet
that lost its hub at the same moment from coming back in lockstep.
"""

import math
import random as _random
from collections.abc import Callable


class Backoff:
    """Delays that grow exponentially up to a cap, each drawn uniformly below it.

    Full jitter (delay = U(0, min(max_s, initial_s * multiplier**attempt)))
    spreads a fleet that lost the hub at the same moment, so its reconnects
    do not arrive as one wave.
    """

    def __init__(
        self,
        *,
        initial_s: float = 0.5,
        max_s: float = 60.0,
        multiplier: float = 2.0,
        rand: Callable[[], float] = _random.random,
    ) -> None:
        """Raises:
        ValueError: a parameter is not finite and positive, max_s < initial_s,
            or multiplier < 1.
        """
        for name, value in (("initial_s", initial_s), ("max_s", max_s)):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: expected a finite positive number, got {value!r}")
        if max_s < initial_s:
            raise ValueError(f"max_s: expected >= initial_s ({initial_s}), got {max_s}")
        if not math.isfinite(multiplier) or multiplier < 1:
            raise ValueError(f"multiplier: expected a finite number >= 1, got {multiplier!r}")
        self._initial_s, self._max_s, self._multiplier = initial_s, max_s, multiplier
        self._rand = rand
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Failures since the last reset."""
        return self._attempt

    def ceiling_s(self) -> float:
        """The upper bound of the next delay."""
        try:
            ceiling = self._initial_s * self._multiplier**self._attempt
        except OverflowError:  # a long outage: far past the cap
            return self._max_s
        return min(self._max_s, ceiling)

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The delay in seconds before the next retry; advances the attempt count.

        `retry_after_s` is the hub's (or a proxy's) Retry-After: the delay is
        then at least that, capped at max_s, plus the usual jittered draw, so
        the node never comes back before it was asked to, and a fleet told the
        same thing still does not come back in lockstep. At most max_s plus
        the current ceiling (twice max_s).
        """
        ceiling = self.ceiling_s()
        self._attempt += 1
        # Clamp: a test double (or a broken RNG) must not produce a negative sleep.
        draw = ceiling * min(1.0, max(0.0, self._rand()))
        if retry_after_s is None or math.isnan(retry_after_s):
            return draw
        return min(max(retry_after_s, 0.0), self._max_s) + draw

    def reset(self) -> None:
        """Start again from initial_s (after a success)."""
        self._attempt = 0
