"""Exponential backoff with full jitter, shared by every retry loop of the agent.

Full jitter (a uniform wait between 0 and the current ceiling) keeps a fleet
that lost its hub at the same moment from coming back in lockstep.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 60.0
    multiplier: float = 2.0
    rand: Callable[[], float] = field(default=random.random, repr=False)
    _ceiling_s: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        """The wait before the next attempt; grows after every failure."""
        self._ceiling_s = (
            self.initial_s
            if self._ceiling_s == 0
            else min(self.max_s, self._ceiling_s * self.multiplier)
        )
        return self.rand() * self._ceiling_s

    def reset(self) -> None:
        """Call after a success: the next failure starts small again."""
        self._ceiling_s = 0.0

    @property
    def ceiling_s(self) -> float:
        return self._ceiling_s
