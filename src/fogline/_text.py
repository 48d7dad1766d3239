"""Text that cannot drive a terminal: control characters shown as escapes.

Used wherever text someone else chose (a device's name, a module's output,
an error a node reported) reaches a person's terminal: the CLI's tables and
the human log format.
"""

import re
from typing import Final

# C0 and C1 controls and DEL (ESC starts the sequences that retitle, clear or
# rewrite a terminal), plus the Unicode controls that reorder or hide text.
UNSAFE_CHARS: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control character written as an escape (ESC as `\\x1b`)."""
    return UNSAFE_CHARS.sub(_escape, text)
