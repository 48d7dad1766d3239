"""A state machine as one explicit table: (state, event) -> state.

Used by the updater (`agent/updater/_states.py`), the supervisor's module
lifecycle (`agent/supervisor/_state.py`) and the hub's rollouts
(`hub/rollouts/_machine.py`); each keeps its own table beside its states.
One behaviour for all of them:

* Every edge is written in the table, including one that keeps the state
  (a probe that passes on a healthy module): staying put is a decision.
* A pair the table does not hold is a bug in whoever fired the event:
  `next_state` raises MissingTransitionError, never guesses (stay, None).
  Where an event may legitimately not apply (an operator asking to resume a
  finished rollout), the caller asks `has_edge` first and answers its user.
"""

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

S = TypeVar("S", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)


class MissingTransitionError(LookupError):
    """The table has no edge for this (state, event): a bug in the caller."""

    def __init__(self, table: str, state: enum.Enum, event: enum.Enum) -> None:
        super().__init__(f"{table}: no transition from {state.name} on {event.name}")
        self.table, self.state, self.event = table, state, event


class StateTable(Generic[S, E]):
    """An immutable (state, event) -> state table and the questions asked of it."""

    __slots__ = ("_edges", "name")

    def __init__(self, name: str, edges: Mapping[tuple[S, E], S]) -> None:
        self.name = name
        self._edges: Mapping[tuple[S, E], S] = MappingProxyType(dict(edges))

    @property
    def edges(self) -> Mapping[tuple[S, E], S]:
        """Every edge, read-only."""
        return self._edges

    def next_state(self, state: S, event: E) -> S:
        """The state after `event` in `state`.

        Raises:
            MissingTransitionError: the table has no such edge (a bug in the caller).
        """
        try:
            return self._edges[(state, event)]
        except KeyError:
            raise MissingTransitionError(self.name, state, event) from None

    def has_edge(self, state: S, event: E) -> bool:
        """Whether `event` may fire in `state`."""
        return (state, event) in self._edges

    def reachable(self, starts: Iterable[S]) -> frozenset[S]:
        """Every state some sequence of events leads to from `starts` (included)."""
        seen = set(starts)
        frontier = list(seen)
        while frontier:  # bounded: each state enters the frontier at most once
            source = frontier.pop()
            for (frm, _event), to in self._edges.items():
                if frm is source and to not in seen:
                    seen.add(to)
                    frontier.append(to)
        return frozenset(seen)

    def missing(self, states: Iterable[S], events: Iterable[E]) -> frozenset[tuple[S, E]]:
        """The (state, event) pairs with no edge: each must be a gap on purpose."""
        events = list(events)
        return frozenset((s, e) for s in states for e in events if (s, e) not in self._edges)
