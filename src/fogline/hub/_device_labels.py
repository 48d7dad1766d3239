"""Where the labels deployments select on come from.

    labels           the claim's, then operators' (`fogline devices label`,
                     `fogline devices promote`)
    platform_labels  fogline.dev/os and fogline.dev/arch, derived by the hub
                     from the facts the device gave when it enrolled
    reported_labels  what the device asks for: shown, never selected on

A device cannot choose what it is selected by: its reports change neither
`labels` nor `platform_labels`. The platform labels are only as true as the
device was when it enrolled (the claim authenticated that moment, not the
hardware): compatibility hints, not an access boundary.
"""

from collections.abc import Mapping
from typing import Any, Final, Protocol

from fogline.protocol import LABEL_VALUE_RE, PLATFORM_LABEL_PREFIX

OS_LABEL: Final = f"{PLATFORM_LABEL_PREFIX}os"
ARCH_LABEL: Final = f"{PLATFORM_LABEL_PREFIX}arch"

# uname -m spellings -> the Go/Kubernetes GOARCH names selectors are written in,
# so `fogline.dev/arch In [arm64]` matches a Raspberry Pi 4 (aarch64).
_ARCH_NAMES: Final = {
    "x86_64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "aarch64_be": "arm64be",
    "armv8l": "arm",  # a 32-bit userland on a 64-bit core
    "armv7l": "arm",
    "armv7": "arm",
    "armv6l": "arm",
    "armhf": "arm",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
}


def normalize_arch(arch: str) -> str:
    """`x86_64` -> `amd64`, `aarch64` -> `arm64`, `armv7l` -> `arm`, `i686` -> `386`;
    any other name lowercased as it is (`riscv64`, `ppc64le`, `s390x`)."""
    lowered = arch.strip().lower()
    return _ARCH_NAMES.get(lowered, lowered)


def platform_labels(facts: Mapping[str, Any]) -> dict[str, str]:
    """The hub's platform labels from a device's facts (os, arch).

    A fact that does not make a label value (too long, odd characters) gives
    no label rather than a mangled one.
    """
    labels: dict[str, str] = {}
    for key, value in ((OS_LABEL, facts.get("os")), (ARCH_LABEL, facts.get("arch"))):
        if not isinstance(value, str) or not value.strip():
            continue
        normal = normalize_arch(value) if key == ARCH_LABEL else value.strip().lower()
        if LABEL_VALUE_RE.match(normal):
            labels[key] = normal
    return labels


class LabelledDevice(Protocol):
    """What targeting reads of a device: a DeviceRow."""

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def platform_labels(self) -> Mapping[str, str]: ...


def effective_labels(device: LabelledDevice) -> dict[str, str]:
    """The labels deployments select the device on: claim and operator labels,
    with the hub's platform labels on top."""
    return {**device.labels, **device.platform_labels}
