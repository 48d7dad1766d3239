"""The bodies of a device's enrollment and certificate renewal, apart from
the rest of the API's (`_models`): an agent, which must enroll and renew,
imports these and never the operator's, users' or claims' models.
"""

from typing import Annotated, Final

from pydantic import Field

from ._base import TolerantModel
from ._report import DeviceFacts, Labels

DEVICE_NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

DeviceName = Annotated[str, Field(pattern=DEVICE_NAME_PATTERN)]


class EnrollRequest(TolerantModel):
    claim: Annotated[str, Field(min_length=1, max_length=200)]
    csr: Annotated[str, Field(min_length=1, max_length=8192)]
    name: DeviceName
    # Labels the device asks for: stored apart, never selected on unless an
    # operator promotes them. os and arch of `facts` become the hub's
    # platform labels, once, at enrollment.
    labels: Labels = {}
    facts: DeviceFacts


class EnrollResponse(TolerantModel):
    device_id: str
    name: str
    certificate: str
    ca: str
    report_interval_s: float
    # Release keys trusted at enrollment (name -> base64 of the Ed25519 key).
    release_keys: dict[str, str] = {}
    # Scopes of the scoped ones among them (name -> module name patterns, see
    # KeyScope); a key not listed signs every module. Absent from answers of
    # hubs older than key scopes, and left out by hubs when no key is scoped,
    # so agents without this field still enroll.
    release_key_scopes: dict[
        str, Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=64)]
    ] = {}
    # The hub's newest TUF root metadata (JSON text), when it has a TUF
    # repository: the node pins it, and from then on trusts only releases its
    # TUF metadata names. Left out by hubs without TUF (older agents enroll).
    tuf_root: Annotated[str, Field(max_length=512 * 1024)] | None = None


class RenewRequest(TolerantModel):
    """A device renewing its certificate over mTLS: a CSR for its (new) key."""

    csr: Annotated[str, Field(min_length=1, max_length=8192)]


class RenewResponse(TolerantModel):
    certificate: str
    # The fleet's trust bundle (PEM, the current CA first): during a CA
    # rotation the new CA and the old one, so the node trusts the hub's
    # certificate whichever CA issued it.
    ca: str
