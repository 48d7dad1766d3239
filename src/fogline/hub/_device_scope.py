"""What a device may download: the releases its desired state names.

A device fetches the releases of its current document, and of the one before
it (`DesiredStateRow.previous_releases`): a device in the middle of an update
or a rollback needs both. Anything else answers as if it did not exist, so a
device learns nothing about the fleet's other releases. Operators (bearer
tokens) read every release.
"""

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ._desired import release_refs
from ._schema import DesiredStateRow

_FETCHABLE = select(DesiredStateRow.document, DesiredStateRow.previous_releases).where(
    DesiredStateRow.device_id == bindparam("device_id")
)


def fetchable_releases(session: Session, device_id: str) -> list[dict[str, str]]:
    """{name, version, digest} of every release the device may download."""
    row = session.execute(_FETCHABLE, {"device_id": device_id}).one_or_none()
    if row is None:
        return []
    return [*release_refs(row.document), *(row.previous_releases or ())]


def may_fetch_release(session: Session, device_id: str, name: str, version: str) -> bool:
    return any(
        ref["name"] == name and ref["version"] == version
        for ref in fetchable_releases(session, device_id)
    )


def may_fetch_artifact(session: Session, device_id: str, digest: str) -> bool:
    return any(ref["digest"] == digest for ref in fetchable_releases(session, device_id))
