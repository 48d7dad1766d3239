"""The hub's restart requests the node honoured (`DesiredModule.restart_generation`).

One small JSON file, `state/restarts.json`: module name -> the last request
generation honoured. The module manager compares each desired module's
generation with it after applying a document: a higher one restarts the
module once and is written down first, so the request is not honoured again
when the same document is applied again (the agent restarting, the document
served anew). Journal before the restart: a crash between the two loses the
restart only when the agent's own stop and start has restarted the module
anyway.
"""

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from fogline._durable import write_atomic
from fogline._log import event

log = logging.getLogger("fogline.agent.modules")
# More modules than any node supervises; the file stays a few KB.
MAX_LEDGER_ENTRIES: Final = 1024
MAX_LEDGER_BYTES: Final = 256 * 1024


class RestartLedger:
    """Last restart generation honoured per module, kept on disk."""

    def __init__(self, path: Path | None) -> None:
        """`path` None: in memory only (tests, the simulator's nodes)."""
        self.path = path
        self._honoured: dict[str, int] = self._load()

    def honoured(self, name: str) -> int:
        return self._honoured.get(name, 0)

    def all(self) -> Mapping[str, int]:
        return dict(self._honoured)

    def note(self, name: str, generation: int) -> None:
        """Record `generation` as honoured for `name`, durably.

        Raises:
            OSError: the file could not be written; the request then counts
                as not honoured (the caller does not restart).
        """
        updated = {**self._honoured, name: generation}
        if len(updated) > MAX_LEDGER_ENTRIES:  # bounded: forget another module's entry
            updated.pop(next(k for k in sorted(updated) if k != name))
        if self.path is not None:
            write_atomic(self.path, json.dumps(updated, sort_keys=True).encode(), mode=0o600)
        self._honoured = updated

    def _load(self) -> dict[str, int]:
        if self.path is None:
            return {}
        try:
            if self.path.stat().st_size > MAX_LEDGER_BYTES:
                raise ValueError(f"larger than {MAX_LEDGER_BYTES} bytes")
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Unreadable: start empty. At worst a pending request is honoured
            # once more, a restart, never a module left stopped.
            event(log, "modules.restart_ledger_unreadable", logging.WARNING, error=str(exc))
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(k): v
            for k, v in list(data.items())[:MAX_LEDGER_ENTRIES]
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0
        }
