"""Agent releases in deployments: what a `kind: agent` module entry may carry.

The agent's own release (`fogline-agent`, `kind: agent`) is run by the node's
launcher with the agent's command line; nothing reads a module config or
environment for it. An entry that sets them would look like it configures
the agent and would not, so plan/apply refuses it, at the field.
"""

from collections.abc import Mapping
from typing import Any

from fogline.manifest import ManifestError, Origin, Problem

from ._models import ReleaseKind


def check_agent_refs(
    deployment_document: Mapping[str, Any],
    *,
    origin: Origin | None = None,
    release_kind: ReleaseKind,
) -> None:
    """No `config` or `env` on a module entry whose release is the agent.

    `deployment_document` has its module references resolved (each entry
    carries `digest`); `origin` places the problems in the operator's file.

    Raises:
        ManifestError: one Problem per field set, at `spec.modules[i].config`
            or `spec.modules[i].env`.
    """
    spec = deployment_document.get("spec")
    if not isinstance(spec, Mapping):
        return
    name = deployment_document.get("metadata", {}).get("name", "?")
    file = origin.file if origin else f"deployment/{name}"
    line, column = (origin.line, origin.column) if origin else (None, None)
    problems: list[Problem] = []
    for i, entry in enumerate(spec.get("modules") or ()):
        if not isinstance(entry, Mapping) or release_kind(str(entry.get("digest"))) != "agent":
            continue
        for field in ("config", "env"):
            if entry.get(field):
                reason = (
                    f"release {entry.get('release')} is the agent itself (kind: agent), which "
                    f"reads no module {field}: its settings are the launcher's `agent run` options"
                )
                problems.append(Problem(file, line, column, f"spec.modules[{i}].{field}", reason))
    if problems:
        raise ManifestError(problems)
