"""A token bucket on an injected clock, for `sample` steps and output rate limits."""

from __future__ import annotations

from typing import Any


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved; starts full.

    Time only ever moves forward here: a clock stepping back (NTP) neither
    refills nor drains the bucket.
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._last: float | None = None

    @property
    def rate_per_s(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def copy_empty(self) -> TokenBucket:
        """A new, full bucket with the same rate and burst."""
        return TokenBucket(self._rate, self._burst)

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means rate-limited."""
        if self._last is None:
            self._last = now
        elif now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def export_state(self) -> dict[str, Any]:
        return {"tokens": self._tokens, "last": self._last}

    def import_state(self, state: Any) -> bool:
        """Restore from `export_state`; False (and no change) if the shape is wrong."""
        if not isinstance(state, dict):
            return False
        tokens: Any = state.get("tokens")
        last: Any = state.get("last")
        if not _is_real(tokens) or not (last is None or _is_real(last)):
            return False
        self._tokens = min(float(tokens), self._burst)
        self._last = None if last is None else float(last)
        return True


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
