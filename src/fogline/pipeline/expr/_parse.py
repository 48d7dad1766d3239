"""From user text to a bounded Python syntax tree, with positions in that text.

``ast.parse`` only parses: nothing here evaluates or compiles to bytecode.
Before it runs, the text is bounded (length, characters) so the parser never
sees hostile sizes; after it runs, the tree is bounded (node count, nesting
depth) so the compiler and the compiled closures can recurse safely.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass
from typing import Final

from ._errors import ExpressionError

MAX_TEXT_CHARS: Final = 2000
MAX_NODES: Final = 1000
# Compiled expressions recurse once per nesting level at run time; the engine
# calls them from its own stack, so keep far below the interpreter's limit.
MAX_DEPTH: Final = 100

# Control characters (tab and line feed excepted) and the bidirectional
# overrides of "Trojan Source": text that reads differently than it parses.
_FORBIDDEN_CHARS: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_LEADING_SPACE: Final = " \t\n"


@dataclass(frozen=True, slots=True)
class Source:
    """The text being compiled and the map from parser positions to columns."""

    text: str
    offset: int  # characters of leading white space the parser did not see
    lines: tuple[str, ...]  # the parsed body, split on line feeds
    line_starts: tuple[int, ...]  # character index of each line in the body

    def column(self, lineno: int, col_bytes: int) -> int:
        """The 1-based column in ``text`` of a parser position (UTF-8 byte offset)."""
        index = min(max(lineno, 1), len(self.lines)) - 1
        prefix = self.lines[index].encode()[: max(col_bytes, 0)]
        chars = len(prefix.decode("utf-8", errors="ignore"))
        return self.offset + self.line_starts[index] + chars + 1

    def node_column(self, node: ast.AST) -> int:
        """The column where ``node`` starts."""
        return self.column(getattr(node, "lineno", 1), getattr(node, "col_offset", 0))

    def end_column(self, node: ast.AST) -> int:
        """The column just after ``node`` ends."""
        lineno: int = getattr(node, "end_lineno", None) or getattr(node, "lineno", 1) or 1
        col: int | None = getattr(node, "end_col_offset", None)
        return self.column(lineno, col if col is not None else 0)

    def char_at(self, column: int) -> str:
        """The character at a 1-based column ('' past the end)."""
        return self.text[column - 1] if 0 < column <= len(self.text) else ""

    def error(self, where: ast.AST | int, reason: str) -> ExpressionError:
        """An ExpressionError at a node or a column."""
        column = where if isinstance(where, int) else self.node_column(where)
        return ExpressionError(self.text, column, reason)


def _split_body(text: str, offset: int) -> Source:
    body = text[offset:]
    lines = tuple(body.split("\n"))
    starts: list[int] = []
    position = 0
    for line in lines:
        starts.append(position)
        position += len(line) + 1
    return Source(text=text, offset=offset, lines=lines, line_starts=tuple(starts))


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise ExpressionError(str(text), 1, f"an expression must be a string, not {type(text)}")
    if len(text) > MAX_TEXT_CHARS:
        raise ExpressionError(
            text, MAX_TEXT_CHARS + 1, f"expression longer than {MAX_TEXT_CHARS} characters"
        )
    bad = _FORBIDDEN_CHARS.search(text)
    if bad:
        raise ExpressionError(text, bad.start() + 1, f"character {bad.group()!r} is not allowed")
    return text


def _check_bounds(tree: ast.Expression, source: Source) -> None:
    # Iterative on purpose: this runs before anything may recurse on the tree.
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise source.error(node, f"expression has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise source.error(node, f"expression nested deeper than {MAX_DEPTH} levels")
        stack.extend(
            (child, depth + 1)
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.expr)
        )
        # Keyword arguments are refused later, but their values count too.
        stack.extend((kw.value, depth + 1) for kw in getattr(node, "keywords", ()))


def parse_expression(text: str) -> tuple[ast.expr, Source]:
    """Parse ``text`` as one Python expression and bound its tree.

    Raises:
        ExpressionError: too long, forbidden characters, syntax, too large.
    """
    text = _check_text(text)
    offset = len(text) - len(text.lstrip(_LEADING_SPACE))
    source = _split_body(text, offset)
    if offset == len(text):
        raise ExpressionError(text, 1, "empty expression")
    try:
        with warnings.catch_warnings():
            # '\d' in a string literal warns on stderr per compile; the
            # literal is still valid, and user text must not spam the log.
            warnings.simplefilter("ignore")
            tree = ast.parse(text[offset:], mode="eval")
    except SyntaxError as exc:  # IndentationError included
        if not exc.offset:  # the parser ran out of text: `value >`
            raise ExpressionError(text, len(text) + 1, "incomplete expression") from None
        index = min(max(exc.lineno or 1, 1), len(source.lines)) - 1
        column = min(offset + source.line_starts[index] + exc.offset, len(text) + 1)
        raise ExpressionError(text, column, f"syntax error: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # The parser's own limits (nesting, null bytes on some versions).
        raise ExpressionError(text, 1, f"cannot parse: {exc}") from None
    _check_bounds(tree, source)
    return tree.body, source
