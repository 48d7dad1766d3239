"""The root of every error Fogline raises on purpose.

FoglineError
  (each package adds its own small tree below this root, split by who is at
  fault; see the package's docstring)

The CLI catches FoglineError once, at the command boundary, and prints one
line without a traceback. Anything else escaping is a bug.
"""


class FoglineError(Exception):
    """Base class of all deliberate Fogline errors."""
