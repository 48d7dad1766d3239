"""Users and API tokens: the bodies of /v1/users, /v1/tokens and /v1/whoami.

Roles are named here as text (`RoleName`); what each grants is
fogline.security's `ROLE_PERMISSIONS`, and a test keeps the two lists equal.
"""

import datetime as dt
from typing import Annotated, Final, Literal

from pydantic import Field

from ._base import TolerantModel, WireModel
from ._report import Labels

RoleName = Literal["viewer", "operator", "release-manager", "admin"]
TokenStatus = Literal["active", "expired", "revoked"]
# Lower-case names, as in a mail address's local part or a CI job's name. At
# most 58 characters: the actor `user:NAME` is stored in 64-character columns
# (audit actor, applied_by, pushed_by, created_by), which PostgreSQL enforces.
PRINCIPAL_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9._@-]{0,57}$"
MAX_TOKEN_LIFETIME_S: Final = 366 * 86400.0

PrincipalName = Annotated[str, Field(pattern=PRINCIPAL_NAME_PATTERN)]


class UserCreate(WireModel):
    name: PrincipalName
    role: RoleName
    # matchLabels the role is limited to (site=berlin); absent: the whole fleet.
    scope: Labels | None = None
    # For the console's sign-in; stored as an argon2id hash only.
    password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None


class UserChange(WireModel):
    """`fogline users set-role`: the role and scope replace the old ones."""

    role: RoleName
    scope: Labels | None = None


class UserView(TolerantModel):
    name: str
    role: str
    scope: dict[str, str] | None = None
    has_password: bool = False
    tokens: int = 0  # active ones
    created_at: dt.datetime
    created_by: str


class TokenCreate(WireModel):
    user: PrincipalName
    name: PrincipalName
    expires_in_s: Annotated[float, Field(gt=0, le=MAX_TOKEN_LIFETIME_S)] = 30 * 86400.0


class SignIn(WireModel):
    """The console's sign-in: a user's password for a short-lived token."""

    user: PrincipalName
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class TokenView(TolerantModel):
    id: str
    name: str
    user: str | None = None  # None: the bootstrap admin token
    status: TokenStatus
    created_at: dt.datetime
    created_by: str | None = None
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class TokenCreated(TolerantModel):
    """The token itself appears here once; the hub keeps only its hash."""

    token: str
    view: TokenView


class WhoAmI(TolerantModel):
    name: str  # as the audit log names the caller: `user:alice`, `admin`
    user: str | None = None
    role: str
    scope: dict[str, str] | None = None
    permissions: list[str] = []
    token: TokenView
