"""What the console's routes share: their router, request parameters and
bounds. Each page module has its own router under /console, all included by
`install_console` (_routes.py)."""

import logging
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.orm import Session

from .._auth import db_session

log = logging.getLogger("fogline.hub.console")
SessionDep = Annotated[Session, Depends(db_session)]
RefPath = Annotated[str, Path(min_length=1, max_length=128)]
Text = Annotated[str | None, Query(max_length=256)]

ROLLOUT_ACTIVE: Final = frozenset({"running", "paused"})
MAX_TABLE_ROWS: Final = 200


def console_router() -> APIRouter:
    """A router for console pages: under /console, left out of the OpenAPI
    document (HTML, not API)."""
    return APIRouter(prefix="/console", include_in_schema=False)
