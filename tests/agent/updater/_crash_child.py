"""The agent's side of the crash tests: recover, then ensure one target, with
the crash hook from FOGLINE_FAULT_CRASH_AT. Runs in a forked child, or as
`python -m tests.agent.updater._crash_child CONFIG.json`.

CONFIG: root, blobs (digest -> archive path), target (ReleaseTarget JSON),
key (base64 public key), deltas (optional [target, base, delta path]), state_file (FileActivator), progress_file (JSON
lines appended per report), unhealthy (versions), chunk_bytes, max_saves,
mode ("update": recover + ensure, "recover": recover only).
"""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from fogline.agent.updater import (
    MemoryArtifactSource,
    ReleaseTarget,
    UpdateLimits,
    UpdateProgress,
    Updater,
    crash_hook_from_env,
)
from fogline.artifact import key_id, load_public_key

from ._support import FileActivator, no_sleep


def progress_writer(path: Path) -> Any:
    # O_APPEND + one write per line: what the kernel has survives SIGKILL.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(p: UpdateProgress) -> None:
        line = {"state": p.state.value, "version": p.version, "error": p.error, "detail": p.detail}
        os.write(fd, json.dumps(line).encode() + b"\n")

    return write


def build_updater(
    config: dict[str, Any], *, crash_hook: Any = None
) -> tuple[Updater, FileActivator, MemoryArtifactSource]:
    public = load_public_key(config["key"])
    activator = FileActivator(
        Path(config["state_file"]), health={v: False for v in config["unhealthy"]}
    )
    source = MemoryArtifactSource(
        {d: Path(p).read_bytes() for d, p in config["blobs"].items()},
        chunk_bytes=config["chunk_bytes"],
        deltas={(t, b): Path(p).read_bytes() for t, b, p in config.get("deltas", [])},
    )
    updater = Updater(
        Path(config["root"]),
        source=source,
        activator=activator,
        trusted_keys=lambda: {key_id(public): public},
        on_progress=progress_writer(Path(config["progress_file"])),
        limits=UpdateLimits(max_saves=config["max_saves"]),
        crash_hook=crash_hook,
        machine="x86_64",
        sleep=no_sleep,
    )
    return updater, activator, source


def child_main(config: dict[str, Any]) -> None:
    updater, _, _ = build_updater(config, crash_hook=crash_hook_from_env())
    target = ReleaseTarget.from_json(config["target"])

    async def agent() -> None:
        await updater.recover()
        if config["mode"] == "update":
            await updater.ensure(target)

    asyncio.run(agent())


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        child_main(json.load(fh))
