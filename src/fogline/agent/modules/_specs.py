"""What the hub's words become in the updater's and supervisor's terms: the
desired state's `modules` become release targets (`targets_from`), and a
release's module file becomes what the supervisor runs (`run_spec`).
"""

from pathlib import Path

import orjson

from fogline.artifact import ModuleSpec
from fogline.protocol import DesiredDocument

from ..supervisor import (
    HealthCheck,
    HealthKind,
    MetricsTarget,
    Resources,
    RestartPolicy,
    RunSpec,
)
from ..updater import ReleaseTarget


def run_spec(
    name: str,
    install_dir: Path,
    spec: ModuleSpec,
    target: ReleaseTarget,
    config_path: Path,
    data_dir: Path | None = None,
) -> RunSpec:
    """The supervisor's view of a release: what to run and how to judge it."""
    health = None
    if spec.health is not None:
        h = spec.health
        kind: HealthKind
        value: str | int | tuple[str, ...] | float
        if h.http:
            kind, value = "http", h.http
        elif h.tcp:
            kind, value = "tcp", h.tcp
        elif h.command:
            kind, value = "command", tuple(h.command)
        else:
            kind, value = "uptime", h.uptime_s or 0.0
        health = HealthCheck(
            kind=kind, target=value, timeout_s=h.timeout_s, interval_s=h.interval_s
        )
    return RunSpec(
        name=name,
        version=str(spec.version),
        workdir=install_dir,
        command=tuple(spec.command or ()),
        env={**spec.env, **target.env},
        config_path=config_path,
        data_dir=data_dir,
        health=health,
        start_grace_s=spec.start_grace_s,
        stop_grace_s=spec.stop_grace_s,
        restart=RestartPolicy(
            policy=spec.restart.policy,
            initial_backoff_s=spec.restart.backoff.initial_s,
            max_backoff_s=spec.restart.backoff.max_s,
        ),
        resources=Resources(
            memory_mb=spec.resources.memory_mb,
            open_files=spec.resources.open_files,
            cpu_seconds=spec.resources.cpu_seconds,
        ),
        metrics=MetricsTarget(
            port=spec.metrics.port, path=spec.metrics.path, series=spec.metrics.series
        )
        if spec.metrics is not None
        else None,
    )


def targets_from(document: DesiredDocument) -> list[ReleaseTarget]:
    """Release targets for the `modules` of a desired-state document.

    A module may go below its installed version when its entry says
    `allowDowngrade: true`, or when the whole document is a rollout's
    rollback (the hub marks it `rollback: {rollout: ID}`).

    Raises:
        InvalidTargetError: an entry's name, version or digest is malformed.
    """
    rollback = document.rollback is not None
    return [
        ReleaseTarget(
            name=entry.name,
            version=entry.version,
            digest=entry.digest,
            signature=orjson.dumps(entry.signature) if entry.signature is not None else b"",
            config=entry.config,
            env=entry.env,
            allow_downgrade=rollback or entry.allow_downgrade,
        )
        for entry in document.modules
    ]
