"""Calls to the function library; nothing else can be called."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._library import COALESCE, FUNCTIONS, MAX_COALESCE_ARGS
from ._nodes import Fn, Node, Record, Site
from ._ops import DATA_ERRORS, Fault

if TYPE_CHECKING:
    from ._compile import Compiler


def compile_call(c: Compiler, node: ast.Call) -> Node:
    """Compile ``name(args)`` for a library function; refuse any other call."""
    func = node.func
    if not isinstance(func, ast.Name):
        c.compile(func)  # report a problem inside first
        column = c.site(func).column
        what = "a computed value"
        if isinstance(func, ast.Attribute):
            column, what = max(c.source.end_column(func) - len(func.attr), column), "a method"
        raise c.source.error(column, f"only library functions can be called, not {what}")
    name = func.id
    if name != COALESCE and name not in FUNCTIONS:
        raise c.source.error(func, f"unknown function {name!r}")
    if node.keywords:
        raise c.source.error(node.keywords[0], "keyword arguments are not supported")
    args = [c.compile(arg) for arg in node.args]
    low, high = _arity(name)
    if not low <= len(args) <= high:
        plural = "s" if high > 1 else ""
        expected = f"{low} argument{plural}" if low == high else f"{low} to {high} arguments"
        raise c.source.error(func, f"{name}() takes {expected}, got {len(args)}")
    fns = tuple(arg.fn for arg in args)
    if name == COALESCE:
        return c.fold(node, Node(_coalesce(fns)), args)
    return c.fold(node, Node(_call(name, FUNCTIONS[name].impl, fns, c.site(func))), args)


def _arity(name: str) -> tuple[int, int]:
    if name == COALESCE:
        return 1, MAX_COALESCE_ARGS
    function = FUNCTIONS[name]
    return function.min_args, function.max_args


def _coalesce(fns: tuple[Fn, ...]) -> Fn:
    # Lazy, like ``or``: once an argument is non-null the rest are not computed.
    def coalesce(r: Record) -> Any:
        for get in fns:
            value = get(r)
            if value is not None:
                return value
        return None

    return coalesce


def _call(name: str, impl: Callable[..., Any], fns: tuple[Fn, ...], site: Site) -> Fn:
    if len(fns) == 1:
        (get,) = fns

        def call_one(r: Record) -> Any:
            try:
                return impl(get(r))
            except Fault as exc:
                site.fail(exc)
            except DATA_ERRORS as exc:  # math domain error, int('x'), ...
                site.fail(Fault(f"{name}(): {exc}"))

        return call_one

    def call(r: Record) -> Any:
        try:
            return impl(*[get(r) for get in fns])
        except Fault as exc:
            site.fail(exc)
        except DATA_ERRORS as exc:
            site.fail(Fault(f"{name}(): {exc}"))

    return call
