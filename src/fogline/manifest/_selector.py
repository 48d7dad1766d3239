"""Label selectors with Kubernetes semantics, and whether two can overlap."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Operator(StrEnum):
    """How a match expression compares a label."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `matchExpressions` entry; `values` is empty for Exists/DoesNotExist."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether `labels` satisfy this requirement."""
        if self.operator is Operator.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            # As in Kubernetes: a device without the label is "not in".
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True, slots=True)
class Selector:
    """`matchLabels` and `matchExpressions`, all of which must hold (AND).

    An empty selector matches every device.
    """

    match_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    match_expressions: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        # Frozen means frozen: a caller's dict must not change the selector later.
        object.__setattr__(self, "match_labels", MappingProxyType(dict(self.match_labels)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether a device with `labels` is selected."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.match_expressions)

    def requirements(self) -> Iterable[Requirement]:
        """All constraints as requirements: matchLabels k=v reads as `k In (v)`."""
        for key, value in self.match_labels.items():
            yield Requirement(key, Operator.IN, frozenset({value}))
        yield from self.match_expressions

    def to_document(self) -> dict[str, object]:
        """Return the selector as written in a manifest, in a canonical order."""
        doc: dict[str, object] = {}
        if self.match_labels:
            doc["matchLabels"] = dict(sorted(self.match_labels.items()))
        if self.match_expressions:
            doc["matchExpressions"] = [
                {"key": r.key, "operator": str(r.operator), "values": sorted(r.values)}
                if r.values
                else {"key": r.key, "operator": str(r.operator)}
                for r in self.match_expressions
            ]
        return doc


@dataclass(slots=True)
class _KeyConstraint:
    """Everything two selectors together say about one label key."""

    present: bool = False
    absent: bool = False
    allowed: frozenset[str] | None = None  # None: any value
    excluded: set[str] = field(default_factory=set)

    def add(self, req: Requirement) -> None:
        if req.operator is Operator.IN:
            self.present = True
            self.allowed = req.values if self.allowed is None else self.allowed & req.values
        elif req.operator is Operator.NOT_IN:
            self.excluded |= req.values
        elif req.operator is Operator.EXISTS:
            self.present = True
        else:
            self.absent = True

    def is_satisfiable(self) -> bool:
        if self.present and self.absent:
            return False
        return self.allowed is None or bool(self.allowed - self.excluded)


def selectors_overlap(a: Selector, b: Selector) -> bool:
    """Return whether some set of labels is matched by both selectors.

    Exact, because labels are independent keys with one value each: the
    selectors overlap unless, for some key, their requirements together
    cannot hold (key=a against key=b, In against NotIn of the same values,
    Exists against DoesNotExist, ...).
    """
    constraints: dict[str, _KeyConstraint] = {}
    for req in (*a.requirements(), *b.requirements()):
        constraints.setdefault(req.key, _KeyConstraint()).add(req)
    return all(c.is_satisfiable() for c in constraints.values())
