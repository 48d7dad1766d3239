"""Fenced code blocks of a Markdown page, with the check a page asks for each.

A block is checked as what it is: by default a YAML block holds whole
manifest documents; a fragment says so with an HTML comment on the line
right before its fence, which readers of the rendered page do not see:

    <!-- doc-check: spec -->
    ```yaml
    modules: [...]
    ```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_FENCE: Final = re.compile(r"^```(\S*)\s*$")
_MARKER: Final = re.compile(r"^<!--\s*doc-check:\s*([a-z][a-z-]*)\s*-->\s*$")


@dataclass(frozen=True, slots=True)
class DocBlock:
    page: Path
    line: int  # of the opening fence, from 1
    lang: str  # "" for a plain ``` block
    kind: str | None  # what the doc-check marker says it is; None: no marker
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def doc_blocks(page: Path) -> list[DocBlock]:
    """Every fenced block of `page`, in order.

    Raises:
        AssertionError: a fence is never closed, or a marker is not followed by a block.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[DocBlock] = []
    i = 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        if marker and not (i + 1 < len(lines) and _FENCE.match(lines[i + 1])):
            raise AssertionError(f"{page.name}:{i + 1}: a doc-check marker must precede a fence")
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{page.name}:{i + 1}: the code block is never closed")
        previous = _MARKER.match(lines[i - 1]) if i > 0 else None
        blocks.append(
            DocBlock(
                page=page,
                line=i + 1,
                lang=opening.group(1),
                kind=previous.group(1) if previous else None,
                text="\n".join(lines[i + 1 : end]) + "\n",
            )
        )
        i = end + 1
    return blocks
