"""The safe expression language of pipeline `filter` and `map` steps.

The language and its null rules are described in `_expression`; the pieces:

    _parse       text -> a bounded syntax tree (ast.parse, never eval)
    _compile     the tree -> closures, refusing anything off the whitelist
    _compare     comparisons;  _calls: function calls (from `_library`)
    _ops         arithmetic and lookups with bounded sizes
    _nodes       the compiled closure type and its call site
    _errors      ExpressionError (compile time), EvaluationError (run time)
"""

from ._errors import EvaluationError, ExpressionError
from ._expression import Expression, compile_expression

__all__ = ["EvaluationError", "Expression", "ExpressionError", "compile_expression"]
