"""Bounds that the hub checks before it reads a vulnerability import (kept
apart from _archive so that knowing them imports none of the OSV code)."""

from typing import Final

MAX_IMPORT_BYTES: Final = 512 << 20  # compressed; OSV's largest ecosystem zip is far below
