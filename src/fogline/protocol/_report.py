"""What a node reports (`POST /v1/report`) and what the hub keeps and shows of it.

The states a report carries are defined here, once: the supervisor's
lifecycle table runs on `ModuleState`, the updater's on `UpdateState`, and
the hub's rollout gate judges the same enums (`UNHEALTHY_MODULE_STATES`).

A report is a TolerantModel (see `_base`): a field a newer agent adds is
dropped by an older hub, a field an older agent lacks takes its default, and
a state value a newer agent adds is kept as text. The hub stores the fields
the node sent (`exclude_unset`), not the defaults it filled in.
"""

import datetime as dt
import enum
from typing import Annotated, Final

from pydantic import AfterValidator, Field

from ._base import TolerantModel, open_enum
from ._labels import validate_user_labels

# The report's major version. Fields are added without changing it (older
# hubs ignore them); a change an older hub must not misread bumps it, and a
# hub refuses a report of a version it does not know with a 422 naming it.
REPORT_VERSION: Final = 1


def _known_report_version(value: int) -> int:
    if value > REPORT_VERSION:
        raise ValueError(
            f"report version {value} is newer than this hub reads ({REPORT_VERSION}); "
            "upgrade the hub"
        )
    return value


Short = Annotated[str, Field(max_length=256)]
# Labels a claim, an operator or a device gives: never under the hub's prefix.
Labels = Annotated[dict[str, str], AfterValidator(validate_user_labels)]
# Bounded as JSON numbers stay exact (2**53): a count sums into the hub's
# 64-bit integer columns (a device's lost outbox records), where a larger one
# was a 500 from the database driver instead of a 422.
Count = Annotated[int, Field(ge=0, le=2**53)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class ModuleState(enum.StrEnum):
    """A module's state on the node, as reported (values are the wire spelling).

    The first six are the supervisor's lifecycle (agent/supervisor/_state.py);
    INSTALLED is a bundle's (a model or configuration release: nothing runs).
    A hub reading a state it does not know keeps the text and does not count
    it as unhealthy.
    """

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    CRASH_LOOP = "crash-loop"
    STOPPED = "stopped"
    EXITED = "exited"
    INSTALLED = "installed"


# What fails a rollout's health gate.
UNHEALTHY_MODULE_STATES: Final = frozenset({ModuleState.UNHEALTHY, ModuleState.CRASH_LOOP})


class UpdateState(enum.StrEnum):
    """Where an update is, as the updater journals and reports it
    (agent/updater/_states.py holds its tables). An update's outcome is DONE
    or FAILED; progress passes through the others."""

    DOWNLOAD = "download"
    VERIFY = "verify"
    INSTALL = "install"
    ACTIVATE = "activate"
    HEALTH = "health"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    CLEANUP = "cleanup"
    DONE = "done"
    FAILED = "failed"


class DriftKind(enum.StrEnum):
    """What drifted from the desired state."""

    FILES = "files"
    PROCESS = "process"
    CONFIG = "config"
    ERROR = "error"  # the check itself failed


class DriftPolicy(enum.StrEnum):
    """A desired document's `drift`: what the node does about drift. A node
    that reads a policy it does not know treats it as REPORT (touch nothing)."""

    CORRECT = "correct"
    REPORT = "report"


# Enum fields as read from a peer: a member, or the text of a newer value.
ModuleStateValue = Annotated[ModuleState | str, open_enum(ModuleState)]
UpdateStateValue = Annotated[UpdateState | str, open_enum(UpdateState)]
DriftKindValue = Annotated[DriftKind | str, open_enum(DriftKind)]
DriftPolicyValue = Annotated[DriftPolicy | str, open_enum(DriftPolicy)]


class DeviceFacts(TolerantModel):
    agent_version: Short
    hostname: Short
    os: Short
    arch: Short
    # 1e999 parses as infinity: refused, like any duration no clock can give.
    uptime_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class AppliedState(TolerantModel):
    """What the node reports about the desired state it last received."""

    revision: str | None = None
    ok: bool = True
    error: Annotated[str | None, Field(max_length=4096)] = None


class OutboxReport(TolerantModel):
    """The node's store-and-forward buffer, as the hub shows it."""

    depth: Count
    bytes: Count
    max_bytes: Count
    oldest_age_s: Finite | None = None
    dropped_quota: Count = 0
    expired: Count = 0
    dead_lettered: Count = 0
    # Quota drops per priority ("0".."9"): what the node gave up to stay in its disk budget.
    dropped_by_priority: Annotated[dict[str, Count], Field(max_length=10)] = {}
    reset_after_corruption: bool = False


def _is_zero(value: int) -> bool:
    return value == 0


class ModuleReport(TolerantModel):
    """One module as the node sees it: a supervised process, or an installed bundle."""

    name: str | None = None  # the key it is listed under
    version: str | None = None
    state: ModuleStateValue
    pid: int | None = None  # None while no process runs
    restarts: Count = 0  # automatic restarts of this version
    last_exit_code: int | None = None  # negative: killed by that signal
    last_error: str | None = None
    stderr_tail: str = ""  # the end of stderr at the last exit
    since: Finite | None = None  # the supervisor's clock when `state` was entered
    # The last restart request of the desired document (DesiredModule.
    # restart_generation) the node honoured; not written while 0, so a
    # report of a module the hub never restarted is the bytes it always was.
    restart_generation: Annotated[int, Field(ge=0, le=2**53, exclude_if=_is_zero)] = 0


class UpdateOutcome(TolerantModel):
    """How the last update of a module ended."""

    version: str | None = None
    state: UpdateStateValue  # DONE or FAILED
    error: str | None = None
    failed_in: UpdateStateValue | None = None  # the step that failed


class UpdateProgressReport(TolerantModel):
    """Where a running update of a module is."""

    version: str | None = None
    state: UpdateStateValue
    detail: str = ""
    bytes_done: Count = 0
    bytes_total: Count | None = None
    error: str | None = None


class DriftFinding(TolerantModel):
    """One difference between a module on the node and its desired state."""

    module: str
    kind: DriftKindValue
    detail: str = ""


class ModulesReport(TolerantModel):
    """The report's `modules` block: statuses, update outcomes and progress, drift."""

    modules: dict[str, ModuleReport] = {}
    updates: dict[str, UpdateOutcome] = {}
    progress: dict[str, UpdateProgressReport] = {}
    drift: list[DriftFinding] = []
    drift_policy: DriftPolicyValue = DriftPolicy.REPORT
    drift_corrections: Count = 0

    def health_problem(self) -> str | None:
        """The first unhealthy module or failed update, in words; None when
        there is none (what a rollout's health gate fails a device on)."""
        for name, status in sorted(self.modules.items()):
            if status.state in UNHEALTHY_MODULE_STATES:
                return f"module {name[:64]} is {status.state}"
        for name, outcome in sorted(self.updates.items()):
            if outcome.state == UpdateState.FAILED:
                return f"update of {name[:64]} is {outcome.state}"
        return None


# -- health: bounds a real node stays far inside; beyond them a value is refused ----------
# (a compromised device cannot store NaN, a negative size or 1e308 in the
# hub's series: the hub answers 422 naming the field). Percentages are of the
# whole node (every CPU together): 100 is the node saturated, whatever its
# number of cores, so nodes compare on one scale.
MAX_HEALTH_BYTES: Final = 2**60  # one exbibyte
MAX_LOAD: Final = 1e6
MIN_TEMPERATURE_C: Final = -100.0
MAX_TEMPERATURE_C: Final = 250.0
MAX_HEALTH_MODULES: Final = 256  # more than any node supervises
# Series a module's metrics endpoint may report (its `metrics.series`): a
# handful chosen for analysis, not a metrics pipeline.
MAX_MODULE_SERIES: Final = 16
MAX_SERIES_VALUE: Final = 1e18
# A Prometheus sample name (`http_errors_total`), as a module's spec lists it.
SERIES_NAME_PATTERN: Final = r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,127}$"

Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
ByteCount = Annotated[int, Field(ge=0, le=MAX_HEALTH_BYTES)]
Load = Annotated[float, Field(ge=0, le=MAX_LOAD, allow_inf_nan=False)]
Celsius = Annotated[float, Field(ge=MIN_TEMPERATURE_C, le=MAX_TEMPERATURE_C, allow_inf_nan=False)]
ModuleKey = Annotated[str, Field(min_length=1, max_length=128)]
SeriesName = Annotated[str, Field(pattern=SERIES_NAME_PATTERN)]
SeriesValue = Annotated[
    float, Field(ge=-MAX_SERIES_VALUE, le=MAX_SERIES_VALUE, allow_inf_nan=False)
]


def _is_empty(value: object) -> bool:
    return not value


class ModuleHealth(TolerantModel):
    """One module's resource use. CPU and RSS are absent while no process runs
    (a stopped module, an installed bundle) and CPU on the first sample."""

    state: ModuleStateValue | None = None
    restarts: Annotated[int, Field(ge=0, le=10**9)] = 0
    cpu_percent: Percent | None = None
    rss_bytes: ByteCount | None = None
    # The series the module's spec chose from its local metrics endpoint
    # (`metrics.series` in fogline-module.yaml), each summed over its label
    # sets; absent when it declares none or the scrape failed.
    metrics: Annotated[
        dict[SeriesName, SeriesValue],
        Field(max_length=MAX_MODULE_SERIES, exclude_if=_is_empty),
    ] = {}


class NodeHealth(TolerantModel):
    """The node's resource use when the report was built.

    cpu_percent is the share of all CPUs busy since the previous sample (absent
    on the first); net counters are totals since boot over every interface but
    loopback; disk figures are of the filesystem holding the agent's data dir;
    temperature is the hottest thermal zone. pipeline_errors and
    pipeline_dropped are the edge data plane's counters since the agent
    started, over every pipeline's steps and outputs (errors; dropped, late
    and rate-limited records); absent without a data plane.
    """

    cpu_percent: Percent | None = None
    load1: Load | None = None
    load5: Load | None = None
    load15: Load | None = None
    mem_used_bytes: ByteCount | None = None
    mem_available_bytes: ByteCount | None = None
    disk_free_bytes: ByteCount | None = None
    disk_total_bytes: ByteCount | None = None
    temperature_c: Celsius | None = None
    net_rx_bytes: ByteCount | None = None
    net_tx_bytes: ByteCount | None = None
    agent_rss_bytes: ByteCount | None = None
    pipeline_errors: Annotated[int, Field(ge=0, le=MAX_HEALTH_BYTES)] | None = None
    pipeline_dropped: Annotated[int, Field(ge=0, le=MAX_HEALTH_BYTES)] | None = None
    modules: Annotated[dict[ModuleKey, ModuleHealth], Field(max_length=MAX_HEALTH_MODULES)] = {}


class HealthPoint(TolerantModel):
    """One point of a device's health series (`GET /v1/devices/{ref}/health`):
    a raw sample, or the aggregate of a bucket starting at `at` (see
    hub/_health.py for how each figure is aggregated). `modules` only in raw
    samples."""

    at: dt.datetime
    cpu_percent: float | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    mem_used_bytes: int | None = None
    mem_available_bytes: int | None = None
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    temperature_c: float | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None
    agent_rss_bytes: int | None = None
    pipeline_errors: int | None = None
    pipeline_dropped: int | None = None
    modules: dict[str, ModuleHealth] | None = None


class HealthSeries(TolerantModel):
    """A device's health over a window, oldest point first. `step_s` 0: the
    raw samples, one per report."""

    device_id: str
    name: str
    since: dt.datetime
    step_s: float
    points: list[HealthPoint] = []


def _is_none(value: object) -> bool:
    return value is None


def _is_first_version(version: int) -> bool:
    return version == 1


class Report(TolerantModel):
    """A node's periodic report. Bounded by the request body cap (MAX_BODY_BYTES)."""

    # Version 1 is never written: hubs from before the field refuse unknown
    # fields, and a report without it is version 1.
    version: Annotated[
        int,
        Field(ge=1, exclude_if=_is_first_version),
        AfterValidator(_known_report_version),
    ] = REPORT_VERSION
    facts: DeviceFacts
    labels: Labels = {}  # the labels the device asks for (see EnrollRequest)
    applied: AppliedState | None = None
    outbox: OutboxReport | None = None
    modules: ModulesReport | None = None
    # Absent from agents before health; not written when None, so a report
    # without it is the bytes it always was.
    health: Annotated[NodeHealth | None, Field(exclude_if=_is_none)] = None


class ReportedState(TolerantModel):
    """What the hub keeps of a node's last report beyond its facts, labels and
    applied revision, and shows in `DeviceView.reported`."""

    outbox: OutboxReport | None = None
    modules: ModulesReport | None = None
    # The node's health at its last report; not shown when it sent none.
    health: Annotated[NodeHealth | None, Field(exclude_if=_is_none)] = None


class ReportAck(TolerantModel):
    report_interval_s: float
    # The key id (hex) of the CA the hub now issues device certificates from:
    # a node whose certificate another CA issued renews early (a CA rotation).
    # Absent from older hubs: the node then renews on its certificate's age only.
    ca_key_id: Annotated[str, Field(max_length=128)] | None = None
