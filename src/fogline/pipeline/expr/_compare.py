"""Comparisons: ``==``, ordering, chains and ``in``.

They are the hot path of ``filter`` steps (``value > 10 and metric ==
'temp'``), so the common shapes, anything against a literal, get closures
of their own that do one lookup and one compare, with error handling only
on the (zero-cost until raised) exception path.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._nodes import Fn, Node, Record, Site
from ._ops import Fault, contains, order_fault

if TYPE_CHECKING:
    from ._compile import Compiler

Test = Callable[[Any, Any], Any]

# An ordering test may raise TypeError: order_fault() then decides (null is
# False, a type mismatch is an error). The others never raise TypeError.
_OPERATORS: Final[Mapping[type[ast.cmpop], tuple[str, Test]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: contains(b, a)),
    ast.NotIn: ("not in", lambda a, b: not contains(b, a)),
}


def compile_compare(c: Compiler, node: ast.Compare) -> Node:
    """Compile ``a < b``, chains ``a < b <= c``, and ``in`` / ``not in``."""
    operands = [node.left, *node.comparators]
    compiled = [c.compile(node.left)]
    symbols: list[str] = []
    tests: list[Test] = []
    sites: list[Site] = []
    for i, op in enumerate(node.ops):
        column = c.operator_column(operands[i], operands[i + 1])
        # The operator is checked before its right side: errors in reading order.
        if isinstance(op, ast.Is | ast.IsNot):
            word = "is not" if isinstance(op, ast.IsNot) else "is"
            raise c.source.error(column, f"'{word}' is not supported; use == or !=")
        compiled.append(c.compile(operands[i + 1]))
        symbol, test = _OPERATORS[type(op)]
        symbols.append(symbol)
        tests.append(test)
        sites.append(c.site(column))

    if len(tests) > 1:
        pairs = tuple(zip(symbols, tests, (n.fn for n in compiled[1:]), strict=True))
        return c.fold(node, Node(_chain(compiled[0].fn, pairs, sites)), compiled)
    left, right = compiled
    fn: Fn
    if right.is_constant and symbols[0] in ("in", "not in"):
        if isinstance(right.value, list):  # a literal list: hash it once
            fn = _in_literal(left, tuple(right.value), symbols[0] == "not in")
        else:
            fn = _single(symbols[0], tests[0], left.fn, right.fn, sites[0])
    elif right.is_constant:
        fn = _against_literal(left, symbols[0], tests[0], right.value, sites[0])
    else:
        fn = _single(symbols[0], tests[0], left.fn, right.fn, sites[0])
    return c.fold(node, Node(fn), compiled)


def _against_literal(left: Node, symbol: str, test: Test, value: Any, site: Site) -> Fn:
    name, get = left.field_name, left.fn
    if symbol == "==":
        if name is not None:
            return lambda r: r.get(name) == value
        return lambda r: get(r) == value
    if symbol == "!=":
        if name is not None:
            return lambda r: r.get(name) != value
        return lambda r: get(r) != value

    def compare_literal(r: Record) -> Any:
        a = r.get(name) if name is not None else get(r)
        try:
            return test(a, value)
        except TypeError:
            try:
                return order_fault(symbol, a, value)
            except Fault as exc:
                site.fail(exc)

    return compare_literal


def _in_literal(left: Node, members: tuple[Any, ...], negate: bool) -> Fn:
    name, get = left.field_name, left.fn
    try:
        hashed: frozenset[Any] | tuple[Any, ...] = frozenset(members)
    except TypeError:  # a nested list literal: scan instead
        hashed = members

    def in_literal(r: Record) -> bool:
        a = r.get(name) if name is not None else get(r)
        try:
            found = a in hashed
        except TypeError:  # an unhashable list or record: compare by scan
            found = a in members
        return not found if negate else found

    return in_literal


def _single(symbol: str, test: Test, get_left: Fn, get_right: Fn, site: Site) -> Fn:
    def compare(r: Record) -> Any:
        a, b = get_left(r), get_right(r)
        try:
            try:
                return test(a, b)
            except TypeError:
                return order_fault(symbol, a, b)
        except (Fault, RecursionError) as exc:  # two deeply nested lists
            site.fail(exc)

    return compare


def _chain(first: Fn, pairs: tuple[tuple[str, Test, Fn], ...], sites: Sequence[Site]) -> Fn:
    # Like Python: each operand is computed once, and the chain stops at the
    # first False without computing the rest.
    def chain(r: Record) -> bool:
        a = first(r)
        for index, (symbol, test, get) in enumerate(pairs):
            b = get(r)
            try:
                try:
                    holds = test(a, b)
                except TypeError:
                    holds = order_fault(symbol, a, b)
            except (Fault, RecursionError) as exc:
                sites[index].fail(exc)
            if not holds:
                return False
            a = b
        return True

    return chain
