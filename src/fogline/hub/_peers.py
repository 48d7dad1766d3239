"""A device against its peers, and failures grouped by what they share (pure).

Peers are devices of the same deployments on the same hardware (the
`fogline.dev/arch` label and a `model` label): a gateway running hot is news
only next to gateways like it. A figure is off when its robust z-score
0.6745 · (x - median) / MAD is beyond `z_max` (3.5, Iglewicz and Hoaglin):
the median and the median absolute deviation are not dragged by the outlier
itself, as a mean and a standard deviation are. A group of fewer than
`min_peers` devices, or a figure every peer has the same (MAD 0), says
nothing.

Failures (devices with the same alert kind) are grouped greedily by the
attribute most of them share (a release `web@2.1.0`, a label `site=berlin`,
hardware `arch=aarch64`), and each group is named by every attribute all its
devices share: "crash-loop: 37 devices, all on web@2.1.0, site=berlin".
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Final

Z_MAX: Final = 3.5
MIN_PEERS: Final = 5
MIN_GROUP: Final = 2
MAX_GROUPS: Final = 20
# The MAD of a normal distribution is 0.6745 of its standard deviation.
_MAD_SCALE: Final = 0.6745


@dataclass(frozen=True, slots=True)
class PeerFigure:
    """One device's figure, and the peer group it belongs to."""

    device_id: str
    peers: str  # the group's key, e.g. "web+db arch=x86_64 model=r1"
    metric: str
    value: float


@dataclass(frozen=True, slots=True)
class Anomaly:
    device_id: str
    peers: str
    metric: str
    value: float
    peer_median: float
    z: float
    peer_count: int

    def words(self) -> str:
        return (
            f"{self.metric} {self.value:.4g} vs median {self.peer_median:.4g} of "
            f"{self.peer_count} peers ({self.peers}): robust z {self.z:+.1f}"
        )


def robust_z(value: float, values: Sequence[float]) -> float | None:
    """0.6745 · (value - median) / MAD; None when the MAD is 0."""
    middle, mad = _median_and_mad(values)
    return _z(value, middle, mad)


def _median_and_mad(values: Sequence[float]) -> tuple[float, float]:
    middle = median(values)
    return middle, median(abs(v - middle) for v in values)


def _z(value: float, middle: float, mad: float) -> float | None:
    return None if mad <= 0 else _MAD_SCALE * (value - middle) / mad


def peer_anomalies(
    figures: Sequence[PeerFigure], *, z_max: float = Z_MAX, min_peers: int = MIN_PEERS
) -> list[Anomaly]:
    """The figures far from their peers', most off first."""
    groups: dict[tuple[str, str], list[PeerFigure]] = {}
    for figure in figures:
        groups.setdefault((figure.peers, figure.metric), []).append(figure)
    found: list[Anomaly] = []
    for members in groups.values():
        if len(members) < min_peers:
            continue
        # Once per group: a group is as large as the fleet (one deployment,
        # one model), and per member this was quadratic in it.
        middle, mad = _median_and_mad([m.value for m in members])
        for member in members:
            z = _z(member.value, middle, mad)
            if z is not None and abs(z) > z_max:
                found.append(
                    Anomaly(
                        member.device_id,
                        member.peers,
                        member.metric,
                        member.value,
                        middle,
                        z,
                        len(members),
                    )
                )
    found.sort(key=lambda a: -abs(a.z))
    return found


def peer_key(deployments: Sequence[str], labels: Mapping[str, str]) -> str:
    """The group a device's figures are compared within."""
    arch = labels.get("fogline.dev/arch", "?")
    model = labels.get("model") or labels.get("fogline.dev/model") or "?"
    return f"{'+'.join(sorted(deployments)) or '-'} arch={arch} model={model}"


@dataclass(frozen=True, slots=True)
class FailureGroup:
    kind: str
    device_ids: tuple[str, ...]
    shared: tuple[str, ...]  # attributes every device of the group has

    def words(self) -> str:
        on = f", all on {', '.join(self.shared)}" if self.shared else ""
        return f"{self.kind}: {len(self.device_ids)} devices{on}"


def group_failures(
    kind: str,
    attributes: Mapping[str, frozenset[str]],
    *,
    min_group: int = MIN_GROUP,
    max_groups: int = MAX_GROUPS,
) -> list[FailureGroup]:
    """Devices failing the same way (`attributes`: device id → what it has,
    e.g. {"web@2.1.0", "site=berlin", "arch=aarch64"}), grouped by the
    attribute most of them share, largest group first.

    Releases (`name@version`) are grouped on first: "all on web@2.1.0" is
    what an operator acts on first. Devices sharing nothing with min_group - 1 others
    are left out."""
    left = dict(attributes)
    groups: list[FailureGroup] = []
    while left and len(groups) < max_groups:
        counts = Counter(a for have in left.values() for a in have)
        big = [(a, n) for a, n in counts.items() if n >= min_group]
        if not big:
            break
        # A release first, then the most shared: a label every device has
        # (os=linux) would otherwise swallow two releases' failures in one.
        best, _ = min(big, key=lambda kv: ("@" not in kv[0], -kv[1], kv[0]))
        members = sorted(d for d, have in left.items() if best in have)
        shared = frozenset.intersection(*(left[d] for d in members))
        groups.append(FailureGroup(kind, tuple(members), _ordered(shared)))
        for device in members:
            del left[device]
    return groups


def _ordered(shared: frozenset[str]) -> tuple[str, ...]:
    """Releases first, then the operators' labels, then the hub's, each sorted."""
    return tuple(sorted(shared, key=lambda a: ("@" not in a, a.startswith("fogline.dev/"), a)))


def device_figures(device_id: str, peers: str, health: Mapping[str, object]) -> list[PeerFigure]:
    """The figures of a device's last reported health that peers are compared on:
    CPU, memory used (%), temperature, disk used (%), each module's RSS and restarts."""
    figures: list[PeerFigure] = []

    def add(metric: str, value: object) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            figures.append(PeerFigure(device_id, peers, metric, float(value)))

    add("cpu_percent", health.get("cpu_percent"))
    add("temperature_c", health.get("temperature_c"))
    used, available = health.get("mem_used_bytes"), health.get("mem_available_bytes")
    if isinstance(used, int) and isinstance(available, int) and used + available > 0:
        add("memory_used_percent", used / (used + available) * 100)
    free, total = health.get("disk_free_bytes"), health.get("disk_total_bytes")
    if isinstance(free, int) and isinstance(total, int) and total > 0:
        add("disk_used_percent", (total - free) / total * 100)
    modules = health.get("modules")
    if isinstance(modules, dict):
        for name, module in list(modules.items())[:64]:
            if isinstance(module, dict):
                add(f"rss_bytes:{str(name)[:64]}", module.get("rss_bytes"))
                add(f"restarts:{str(name)[:64]}", module.get("restarts"))
    return figures
