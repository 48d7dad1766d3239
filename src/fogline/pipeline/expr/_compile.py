"""Compile a bounded syntax tree into closures, refusing anything off the whitelist.

``_WHITELIST`` maps each allowed node type to the one function that compiles
it; any other node type is an ``ExpressionError`` at its column.
Comparisons live in ``_compare``, calls in ``_calls``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ._calls import compile_call
from ._compare import compile_compare
from ._errors import EvaluationError, ExpressionError
from ._nodes import Fn, Node, Record, Site, constant
from ._ops import ARITHMETIC, DATA_ERRORS, Fault, check_int, lookup, negate, plus
from ._parse import Source

LITERAL_NAMES: Final[Mapping[str, object]] = {"true": True, "false": False, "null": None}
_BIN_OPS: Final[Mapping[type[ast.operator], str]] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_REFUSED_BIN_OPS: Final[Mapping[type[ast.operator], str]] = {
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.MatMult: "@",
}
_UNSUPPORTED: Final[Mapping[type[ast.AST], str]] = {
    ast.Lambda: "lambda is not supported",
    ast.ListComp: "comprehensions are not supported",
    ast.SetComp: "comprehensions are not supported",
    ast.DictComp: "comprehensions are not supported",
    ast.GeneratorExp: "comprehensions are not supported",
    ast.NamedExpr: "assignment (:=) is not supported",
    ast.Starred: "starred arguments (*x) are not supported",
    ast.JoinedStr: "f-strings are not supported",
    ast.FormattedValue: "f-strings are not supported",
    ast.Dict: "dict literals are not supported",
    ast.Set: "set literals are not supported; use a list",
    ast.Slice: "slices are not supported",
    ast.Await: "await is not supported",
    ast.Yield: "yield is not supported",
    ast.YieldFrom: "yield is not supported",
}
_EMPTY_RECORD: Final[Record] = {}


class Compiler:
    """One compilation: the source, the known fields, and the fields read."""

    def __init__(self, source: Source, fields: frozenset[str] | None) -> None:
        self.source = source
        self._known = fields
        self.fields_read: set[str] = set()

    def compile(self, node: ast.expr) -> Node:
        """Compile one sub-expression (children first, so errors come in reading order)."""
        method = _WHITELIST.get(type(node))
        if method is None:
            reason = _UNSUPPORTED.get(type(node), f"{type(node).__name__} is not supported")
            raise self.source.error(node, reason)
        return method(self, node)

    def site(self, where: ast.AST | int) -> Site:
        """The run-time error site of a node or column."""
        column = where if isinstance(where, int) else self.source.node_column(where)
        return Site(self.source.text, column)

    def fold(self, node: ast.AST, compiled: Node, children: Iterable[Node]) -> Node:
        """Compute a node made only of literals now, so its errors are compile errors."""
        if not all(child.is_constant for child in children):
            return compiled
        try:
            value = compiled.fn(_EMPTY_RECORD)
        except EvaluationError as exc:
            column = exc.column or self.source.node_column(node)
            raise ExpressionError(self.source.text, column, exc.reason) from None
        return constant(value)

    def operator_column(self, left: ast.AST, right: ast.AST) -> int:
        """The column of the operator between two operands (the AST has none)."""
        column, end = self.source.end_column(left), self.source.node_column(right)
        while column < end and self.source.char_at(column) in " \t\n)":
            column += 1
        return column

    def check_name(self, name: str, column: int) -> None:
        """Refuse dunder names: sandbox escapes start there; no field needs one."""
        if name.startswith("__"):
            raise self.source.error(column, f"name {name!r} is not allowed")

    # -- leaves -------------------------------------------------------------

    def _compile_Constant(self, node: ast.Constant) -> Node:
        value = node.value
        if value is None or isinstance(value, bool | float | str):
            return constant(value)
        if isinstance(value, int):
            try:
                return constant(check_int(value))
            except Fault as exc:
                raise self.source.error(node, str(exc.args[0])) from None
        raise self.source.error(node, f"{type(value).__name__} literals are not supported")

    def _compile_Name(self, node: ast.Name) -> Node:
        name = node.id
        if name in LITERAL_NAMES:
            return constant(LITERAL_NAMES[name])
        self.check_name(name, self.source.node_column(node))
        if self._known is not None and name not in self._known:
            known = ", ".join(sorted(self._known)[:20]) or "none"
            raise self.source.error(node, f"unknown field {name!r} (known: {known})")
        self.fields_read.add(name)
        return Node(lambda r: r.get(name), field_name=name)

    def _compile_List(self, node: ast.List | ast.Tuple) -> Node:
        items = [self.compile(item) for item in node.elts]
        if all(item.is_constant for item in items):
            return constant([item.value for item in items])
        fns = tuple(item.fn for item in items)
        return Node(lambda r: [get(r) for get in fns])

    # -- record lookups: payload.temp, payload['temp'], tags[0] ---------------

    def _record_base(self, base: ast.expr, column: int, what: str, attr: str = "") -> Node:
        """Compile the thing being looked into (children first); it must be a field path."""
        is_literal_name = isinstance(base, ast.Name) and base.id in LITERAL_NAMES
        compiled = self.compile(base)
        if attr:
            self.check_name(attr, column)
        if is_literal_name or not isinstance(base, ast.Name | ast.Attribute | ast.Subscript):
            kind = "a literal" if compiled.is_constant else "a computed value"
            raise self.source.error(column, f"{what} works on fields, not on {kind}")
        return compiled

    def _compile_Attribute(self, node: ast.Attribute) -> Node:
        # The attribute name's own column: the node itself starts at its base.
        column = max(self.source.end_column(node) - len(node.attr), self.source.node_column(node))
        base = self._record_base(node.value, column, f"'.{node.attr}'", node.attr)
        return self._lookup(base.fn, node.attr, self.site(column))

    def _compile_Subscript(self, node: ast.Subscript) -> Node:
        base = self._record_base(node.value, self.source.node_column(node.slice), "'[...]'")
        index = self.compile(node.slice)
        site = self.site(node.slice)
        if index.is_constant:
            key = index.value
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise self.source.error(
                    node.slice, f"an index must be a string or int, not {type(key).__name__}"
                )
            return self._lookup(base.fn, key, site)
        get_base, get_index = base.fn, index.fn

        def subscript(r: Record) -> Any:
            try:
                return lookup(get_base(r), get_index(r))
            except Fault as exc:
                site.fail(exc)

        return Node(subscript)

    def _lookup(self, get_base: Fn, key: str | int, site: Site) -> Node:
        def record_lookup(r: Record) -> Any:
            value = get_base(r)
            if type(value) is dict and type(key) is str:  # the common case, no call
                return value.get(key)
            try:
                return lookup(value, key)
            except Fault as exc:
                site.fail(exc)

        return Node(record_lookup)

    # -- operators ----------------------------------------------------------

    def _compile_BinOp(self, node: ast.BinOp) -> Node:
        left = self.compile(node.left)
        column = self.operator_column(node.left, node.right)
        symbol = _BIN_OPS.get(type(node.op))
        if symbol is None:
            shown = _REFUSED_BIN_OPS.get(type(node.op), type(node.op).__name__)
            raise self.source.error(column, f"operator {shown!r} is not supported")
        right = self.compile(node.right)
        for operand in (left, right):
            if operand.is_constant:
                self._check_literal_operand(symbol, operand.value, column)
        fn = _binop(symbol, left, right, self.site(column))
        return self.fold(node, Node(fn), (left, right))

    def _check_literal_operand(self, symbol: str, value: object, column: int) -> None:
        # Refuse what can never work now rather than on every event:
        # `'%s' % value` (printf formatting in Python) or `null + 1`.
        if value is None or isinstance(value, list):
            kind = "null" if value is None else "a list"
        elif isinstance(value, str) and symbol not in ("+", "*"):
            kind = "a string"
        else:
            return
        raise self.source.error(column, f"'{symbol}' cannot take {kind}")

    def _compile_UnaryOp(self, node: ast.UnaryOp) -> Node:
        if isinstance(node.op, ast.Invert):
            raise self.source.error(node, "operator '~' is not supported")
        operand = self.compile(node.operand)
        get = operand.fn
        if isinstance(node.op, ast.Not):
            return self.fold(node, Node(lambda r: not get(r)), (operand,))
        op, site = (negate if isinstance(node.op, ast.USub) else plus), self.site(node)

        def unary(r: Record) -> Any:
            try:
                return op(get(r))
            except Fault as exc:
                site.fail(exc)

        return self.fold(node, Node(unary), (operand,))

    def _compile_BoolOp(self, node: ast.BoolOp) -> Node:
        operands = [self.compile(value) for value in node.values]
        fns = tuple(operand.fn for operand in operands)
        is_and = isinstance(node.op, ast.And)
        if len(fns) == 2:
            a, b = fns
            fn: Fn = (lambda r: a(r) and b(r)) if is_and else (lambda r: a(r) or b(r))
        else:

            def fn(r: Record) -> Any:
                value = None
                for get in fns:
                    value = get(r)
                    if (not value) if is_and else value:
                        return value
                return value

        return self.fold(node, Node(fn), operands)

    def _compile_IfExp(self, node: ast.IfExp) -> Node:
        # Reading order: body, test, orelse.
        body = self.compile(node.body)
        test = self.compile(node.test)
        orelse = self.compile(node.orelse)
        get_test, get_body, get_orelse = test.fn, body.fn, orelse.fn
        fn: Fn = lambda r: get_body(r) if get_test(r) else get_orelse(r)  # noqa: E731
        return self.fold(node, Node(fn), (test, body, orelse))


# The whole language: a node type missing here is refused with its column.
_WHITELIST: Final[Mapping[type[ast.AST], Callable[[Compiler, Any], Node]]] = {
    ast.Constant: Compiler._compile_Constant,
    ast.Name: Compiler._compile_Name,
    ast.List: Compiler._compile_List,
    ast.Tuple: Compiler._compile_List,
    ast.Attribute: Compiler._compile_Attribute,
    ast.Subscript: Compiler._compile_Subscript,
    ast.BinOp: Compiler._compile_BinOp,
    ast.UnaryOp: Compiler._compile_UnaryOp,
    ast.BoolOp: Compiler._compile_BoolOp,
    ast.IfExp: Compiler._compile_IfExp,
    ast.Compare: compile_compare,
    ast.Call: compile_call,
}


# Operators Python may apply directly once both operands are int or float:
# none of them can blow up in size. '*' is fast only with a float involved
# (int * int is width-checked), '**' never.
_NUMBERS: Final = frozenset({int, float})
_FLOATS: Final = frozenset({float})
_FAST: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}


def _binop(symbol: str, left: Node, right: Node, site: Site) -> Fn:
    op, fast, get_left, get_right = ARITHMETIC[symbol], _FAST.get(symbol), left.fn, right.fn
    if fast is not None and right.is_constant and type(right.value) in _NUMBERS:
        # `value * 9 / 5 + 32`: a literal right operand is the common shape.
        b = right.value
        fast_left = _FLOATS if symbol == "*" and type(b) is int else _NUMBERS

        def binop_literal(r: Record) -> Any:
            a = get_left(r)
            try:
                if type(a) in fast_left:
                    return fast(a, b)
                return op(a, b)
            except Fault as exc:
                site.fail(exc)
            except DATA_ERRORS as exc:  # x / 0, int too large for a float, ...
                site.fail(exc)

        return binop_literal
    if fast is not None and symbol != "*":

        def binop_numbers(r: Record) -> Any:
            a, b = get_left(r), get_right(r)
            try:
                if type(a) in _NUMBERS and type(b) in _NUMBERS:
                    return fast(a, b)
                return op(a, b)
            except Fault as exc:
                site.fail(exc)
            except DATA_ERRORS as exc:
                site.fail(exc)

        return binop_numbers

    def binop(r: Record) -> Any:
        try:
            return op(get_left(r), get_right(r))
        except Fault as exc:
            site.fail(exc)
        except DATA_ERRORS as exc:
            site.fail(exc)

    return binop
