"""What one hub process holds: database, CA, metrics and settings."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fogline.manifest import BlockValidators
from fogline.security import CertificateAuthority

from ._desired import DeploymentCache, DesiredNotifier
from ._metrics import HubMetrics


@dataclass(frozen=True, slots=True)
class HubSettings:
    report_interval_s: float = 10.0
    # A device is online while its last report is younger than this.
    offline_after_s: float = 35.0


@dataclass(slots=True)
class HubState:
    engine: Engine
    sessions: sessionmaker[Session]
    ca: CertificateAuthority
    settings: HubSettings = field(default_factory=HubSettings)
    metrics: HubMetrics = field(default_factory=HubMetrics)
    deployments: DeploymentCache = field(default_factory=DeploymentCache)
    notifier: DesiredNotifier = field(default_factory=DesiredNotifier)
    # Deeper checks of manifest blocks (modules, pipelines, rollout) run at
    # plan/apply time, so a bad block never reaches a node.
    validators: BlockValidators | None = None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session
