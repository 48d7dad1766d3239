"""The safe expression language of pipeline ``filter`` and ``map`` steps.

Operators write Python-like expressions in their pipeline YAML::

    filter: "metric == 'temp' and value > -50"
    map: {fahrenheit: "value * 9 / 5 + 32", alarm: "abs(value - 20) > 5"}

The text comes from users and runs on every event, so it is never given to
``eval``/``exec`` nor compiled to bytecode. ``ast.parse`` only parses it; a
whitelist of node types is then compiled, once, into a tree of Python
closures (``_compile``). Anything off the whitelist is an
``ExpressionError`` with its column.

Language
    literals       1, 2.5, 'text', true/false/null (also True/False/None), and
                   [lists] or (tuples) of expressions (both evaluate to lists)
    fields         ``value`` reads a field of the record; ``payload.temp`` and
                   ``payload['temp']`` read inside a nested record (never a
                   Python attribute); ``tags[0]``, ``tags[-1]`` index a list
    arithmetic     + - * / // % ** and unary - + on numbers; ``+`` joins two
                   strings and ``str * int`` repeats one, bounded in size;
                   integers are bounded in width (``9 ** 9 ** 9`` is refused)
    comparisons    == != < <= > >=, chained like ``0 < value < 10``, and
                   ``in`` / ``not in`` over a list, a string or a record's keys
    logic          and, or, not, ``a if cond else b``; Python truthiness, and
                   ``and``/``or`` return an operand, as in Python
    functions      abs min max round floor ceil sqrt log exp len lower upper
                   startswith endswith contains int float str bool clamp and
                   coalesce(a, b, ...); nothing else can be called, and
                   keyword arguments are refused. All are pure (no clock).

Missing data (SQL-ish null)
    * a missing field, key or list index reads as null (``None``), and so
      does any lookup inside a null (``payload.temp`` without ``payload``)
      or with a null key (``tags[missing]``);
    * an ordering comparison (< <= > >=) with a null operand is False, so
      ``filter: "value > 10"`` drops events without ``value``;
    * ``==`` and ``!=`` are plain equality: ``value == null`` tests for a
      missing field, and ``metric != 'temp'`` is True without ``metric``;
    * ``in`` a null container is False (``not in`` is True);
    * arithmetic and functions on null raise ``EvaluationError``; write
      ``coalesce(value, 0)`` for a default.

Run-time failures raise ``EvaluationError`` for that one record: null in
arithmetic, mismatched types (``'abc' + 1``, ``'abc' < 1``), division by
zero, a result over the size bounds, looking inside a number. Nothing is
checked ahead of time on the hot path; errors cost only when they happen.
A sub-expression made only of literals is computed at compile time, so
``1 / 0`` or ``'a' * 10 ** 9`` fail as ``ExpressionError`` before any event.

Errors (the whole tree is in ``pipeline/_errors``)::

    PipelineError
      ExpressionError   the text does not compile: text, column, reason
      EvaluationError   one record made the expression fail: text, reason
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._compile import Compiler
from ._nodes import Fn
from ._parse import parse_expression


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression: ``evaluate(record)`` once per event.

    ``evaluate`` is the compiled closure itself, not a method, so a hot loop
    may hoist it (``fn = expr.evaluate`` then ``fn(record)``). It raises
    ``EvaluationError`` when the record makes the expression fail.
    ``fields`` holds the top-level field names the expression reads.
    """

    text: str
    fields: frozenset[str]
    evaluate: Fn = field(compare=False, repr=False)


def compile_expression(text: str, *, fields: frozenset[str] | None = None) -> Expression:
    """Compile ``text`` once, for evaluation on many records.

    ``fields``, when given, lists every top-level field a record may carry;
    any other name is a compile error (a typo caught before deployment).

    Raises:
        ExpressionError: a syntax error, anything outside the language, an
            unknown field, a literal computation that fails, or text or a
            tree over the size bounds.
    """
    tree, source = parse_expression(text)
    compiler = Compiler(source, fields)
    root = compiler.compile(tree)
    return Expression(text=text, fields=frozenset(compiler.fields_read), evaluate=root.fn)
