"""Scoped roles: a principal limited to labels (`site=berlin`) changes only
what lies inside them. Each check answers 403 naming the scope and what
fell outside it.
"""

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.manifest import Deployment
from fogline.security import labels_within_scope, scope_text, selector_within_scope

from ._device_labels import effective_labels
from ._errors import ForbiddenError
from ._people import Principal
from ._schema import DeviceRow, RolloutDeviceRow, RolloutRow


def _outside(principal: Principal, what: str) -> ForbiddenError:
    assert principal.scope is not None
    return ForbiddenError(
        f"{principal.name} is scoped to selector {scope_text(principal.scope)}: {what} "
        "outside that selector",
        field="scope",
    )


def check_device_in_scope(
    principal: Principal, device: DeviceRow, labels_after: Mapping[str, str] | None = None
) -> None:
    """The device is inside the scope now, and (given `labels_after`) after the change.

    Raises: ForbiddenError.
    """
    if principal.scope is None:
        return
    if not labels_within_scope(effective_labels(device), principal.scope):
        raise _outside(principal, f"device {device.name!r} is")
    if labels_after is not None and not labels_within_scope(labels_after, principal.scope):
        raise _outside(principal, f"device {device.name!r} would move")


def check_deployments_in_scope(
    principal: Principal, deployments: Iterable[Deployment], verb: str
) -> None:
    """Every deployment selects only devices inside the scope, today and later.

    Raises: ForbiddenError naming the first deployment and its selector.
    """
    if principal.scope is None:
        return
    for deployment in deployments:
        if not selector_within_scope(deployment.selector, principal.scope):
            shown = deployment.selector.to_document() or "{} (every device)"
            raise _outside(
                principal,
                f"cannot {verb} deployment {deployment.name!r}: its selector {shown} "
                "reaches devices",
            )


def check_rollout_in_scope(principal: Principal, session: Session, rollout: RolloutRow) -> None:
    """Every device of the rollout is inside the scope.

    Raises: ForbiddenError naming the first device outside it.
    """
    if principal.scope is None:
        return
    query = (
        select(DeviceRow)
        .join(RolloutDeviceRow, RolloutDeviceRow.device_id == DeviceRow.id)
        .where(RolloutDeviceRow.rollout_id == rollout.id)
    )
    for device in session.scalars(query):
        if not labels_within_scope(effective_labels(device), principal.scope):
            raise _outside(principal, f"rollout {rollout.id} moves device {device.name!r}")


def check_unscoped(principal: Principal, what: str) -> None:
    """`what` is fleet-wide (a release key, a claim): no scoped role may change it.

    Raises: ForbiddenError.
    """
    if principal.scope is not None:
        raise ForbiddenError(
            f"{principal.name} is scoped to selector {scope_text(principal.scope)}, and {what} "
            "is fleet-wide: only an unscoped role may change it",
            field="scope",
        )
