"""OSV advisories: the parts Fogline reads, checked at the boundary.

The OSV schema (https://ossf.github.io/osv-schema/) is open: unknown fields
are kept in the stored document and ignored here. What is read must have
the type the schema gives it; an advisory that does not is refused with the
file and the field, never half-read.
"""

import datetime as dt
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import AdvisoryError

MAX_ADVISORY_BYTES: Final = 1 << 20  # the largest real OSV entries are ~200 KiB
_ID: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_EVENT_KINDS: Final = ("introduced", "fixed", "last_affected", "limit")
Text = Annotated[str, Field(max_length=1024)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(_Model):
    """One range event: exactly one of the four keys."""

    introduced: Text | None = None
    fixed: Text | None = None
    last_affected: Text | None = None
    limit: Text | None = None

    def kind_and_version(self) -> tuple[str, str]:
        for kind in _EVENT_KINDS:
            value = getattr(self, kind)
            if value is not None:
                return kind, value
        raise ValueError("an event names one of introduced, fixed, last_affected, limit")


class Range(_Model):
    type: Literal["ECOSYSTEM", "SEMVER", "GIT"]
    events: Annotated[list[Event], Field(min_length=1, max_length=1000)]


class Package(_Model):
    ecosystem: Annotated[str, Field(min_length=1, max_length=128)]
    name: Annotated[str, Field(min_length=1, max_length=512)]
    purl: Text | None = None


class Severity(_Model):
    type: Annotated[str, Field(max_length=32)]
    score: Text


class Affected(_Model):
    package: Package | None = None
    ranges: Annotated[list[Range], Field(max_length=1000)] = []
    versions: Annotated[list[Text], Field(max_length=100_000)] = []
    severity: Annotated[list[Severity], Field(max_length=16)] = []


class Advisory(_Model):
    """An OSV entry, as far as matching and the gate read it."""

    id: Annotated[str, Field(pattern=_ID)]
    modified: dt.datetime
    published: dt.datetime | None = None
    withdrawn: dt.datetime | None = None
    summary: Annotated[str, Field(max_length=100_000)] = ""
    aliases: Annotated[list[Text], Field(max_length=1000)] = []
    affected: Annotated[list[Affected], Field(max_length=10_000)] = []
    severity: Annotated[list[Severity], Field(max_length=16)] = []
    database_specific: dict[str, Any] | None = None

    def is_withdrawn(self, now: dt.datetime) -> bool:
        return self.withdrawn is not None and _aware(self.withdrawn) <= now


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def parse_advisory(data: bytes, source: str) -> Advisory:
    """Parse one OSV JSON file.

    Raises:
        AdvisoryError: too large, not JSON, or a field of the wrong type (`source`: field: reason).
    """
    if len(data) > MAX_ADVISORY_BYTES:
        raise AdvisoryError(source, "", f"larger than {MAX_ADVISORY_BYTES} bytes")
    try:
        advisory = Advisory.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AdvisoryError(source, where, first["msg"]) from None
    for i, affected in enumerate(advisory.affected):
        for j, range_ in enumerate(affected.ranges):
            for k, event in enumerate(range_.events):
                kinds = [
                    n
                    for n in ("introduced", "fixed", "last_affected", "limit")
                    if getattr(event, n) is not None
                ]
                if len(kinds) != 1:
                    raise AdvisoryError(
                        source,
                        f"affected.{i}.ranges.{j}.events.{k}",
                        "an event has exactly one of introduced, fixed, last_affected, limit",
                    )
    return advisory
