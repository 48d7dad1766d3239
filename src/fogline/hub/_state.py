"""What one hub process holds: database, CA, metrics and settings."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fogline.manifest import BlockValidators
from fogline.security import CertificateAuthority

from ._alerts import AlertThresholds
from ._desired import DeploymentCache
from ._desired_watch import DesiredNotifier
from ._forecast import ForecastSettings
from ._health import HealthRetention
from ._metrics import HubMetrics
from ._reports import ReportWriter
from ._trust import FleetTrust
from ._tuf import MetadataCache, TufSettings
from ._validators import default_validators
from .releases import ArtifactOffload, DeltaCache, DeltaSettings


@dataclass(frozen=True, slots=True)
class HubSettings:
    report_interval_s: float = 10.0
    # Lifetime of device certificates; agents renew at two thirds of it.
    device_cert_validity_s: float = 365 * 86400.0
    # A device is online while its last report is younger than this.
    offline_after_s: float = 35.0
    telemetry_retention_s: float = 7 * 86400.0
    # How often the rollout scheduler judges devices and passes wave gates.
    rollout_tick_s: float = 1.0
    # Device health series: raw and rollup retention, rollup step.
    health: HealthRetention = field(default_factory=HealthRetention)
    # When the hub raises alerts, and where it sends them.
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    # Forecasts over health series (disk full, memory leaks): see _insights.py.
    forecast: ForecastSettings = field(default_factory=ForecastSettings)
    # Lifetimes of the TUF snapshot and timestamp the hub signs online.
    tuf: TufSettings = field(default_factory=TufSettings)
    # Delta updates (releases/_deltas.py): on by default, `--no-deltas` turns them off.
    deltas: DeltaSettings = field(default_factory=DeltaSettings)
    # Artifact offload (releases/_offload.py): None, the default, serves the
    # bytes from this process; set, devices are redirected to nginx.
    offload: ArtifactOffload | None = None


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
    validators: BlockValidators = field(default_factory=default_validators)
    # Content-addressed release archives (DATA/artifacts); None: no store, so
    # release pushes and artifact downloads answer 503.
    artifacts_dir: Path | None = None
    # The data directory's CAs, reloaded when a rotation changes them; None
    # (an app built in a test): `ca` alone issues and is trusted.
    trust: FleetTrust | None = None
    # The TUF online key (snapshot, timestamp): DATA/tuf-online-key.pem;
    # None (an app built in a test): the TUF routes answer 503.
    tuf_key_path: Path | None = None
    # The TUF metadata versions this process served (see _tuf.py).
    tuf_cache: MetadataCache = field(default_factory=MetadataCache)
    # Device reports, written in batches (see _reports.py).
    reports: ReportWriter = field(init=False)
    # Deltas made for nodes, one at a time, cached under artifacts_dir/deltas.
    deltas: DeltaCache = field(init=False)

    def __post_init__(self) -> None:
        self.deltas = DeltaCache(self.settings.deltas)
        self.reports = ReportWriter(
            self.sessions, observe_batch=self.metrics.report_batches.observe
        )

    def signing_ca(self) -> CertificateAuthority:
        """The CA device certificates are issued from now."""
        return self.trust.signing_ca() if self.trust is not None else self.ca

    def trust_bundle_pem(self) -> bytes:
        """Every CA devices must trust, the issuing one first."""
        return self.trust.bundle_pem() if self.trust is not None else self.ca.cert_pem

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session
