"""The desired-state document (`GET /v1/desired`): what the hub wants a node to run.

The hub compiles it from the deployments that select the device
(fogline.manifest, hub/_desired.py) and names it by its revision, the hash
of its canonical JSON. The node checks that hash, then reads the document
through these models, once, where it receives it (and where it reads its
local copy back).

The document models keep what they do not know (`extra="allow"`) and dump
exactly what they were given: a newer hub's field reaches an older node's
disk and hash unchanged, and a document read and written again has the
revision it was sent with. The pipeline blocks stay JSON objects here:
fogline.pipeline validates them on the node (PipelineSpec), and typing them
twice would give the contract two definitions to keep in step.
"""

from typing import Annotated, Any, Final

import orjson
from pydantic import ConfigDict, Field, ValidationError

from fogline._errors import FoglineError

from ._base import AsSentModel, TolerantModel
from ._canonical import revision_of
from ._report import DriftPolicy, DriftPolicyValue
from ._sensors import SensorAccess

# The document's major version. Fields are added without changing it (older
# nodes keep and ignore them); a change an older node must not misread bumps
# it, and a node does not apply a document of a version it does not know (it
# keeps its last one and reports why).
DESIRED_VERSION: Final = 1


class DesiredStateError(FoglineError):
    """A desired state the node must not apply.

    `revision` is set when the document is intact (its content hashes to the
    revision it came with) but unusable here: a newer version, or a field
    that does not parse. The node then reports that revision refused. None:
    not a desired state at all, or damaged on the way or on disk.
    """

    def __init__(self, message: str, *, revision: str | None = None) -> None:
        super().__init__(message)
        self.revision = revision


class DocumentModel(AsSentModel):
    """A part of the desired document: keeps unknown fields, dumps as given."""

    model_config = ConfigDict(extra="allow")


class Contributor(DocumentModel):
    """A deployment that contributed to the document (the document's `deployments`)."""

    name: str
    priority: int = 0


class RollbackMarker(DocumentModel):
    """`rollback`: this document is a rollout's rollback, so its modules may
    go below the versions installed."""

    rollout: str


class DesiredModule(DocumentModel):
    """One module entry: the release to run, resolved by the hub at apply."""

    name: str
    version: str
    digest: str
    release: str | None = None  # as the deployment wrote it: NAME@VERSION or a digest
    signature: dict[str, Any] | None = None  # the release's .sig envelope (fogline.artifact)
    config: dict[str, Any] = {}
    env: dict[str, str] = {}
    # May the node go below its installed version for this entry?
    allow_downgrade: bool = Field(default=False, alias="allowDowngrade")
    # A restart the hub asks for (self-healing): the node restarts the module
    # once when this is above the last generation it honoured (kept on its
    # disk, reported as ModuleReport.restart_generation), so a request is
    # honoured once, also across agent restarts. Absent (0) until the hub
    # first asks: documents compiled before it keep their revisions.
    restart_generation: int = Field(default=0, ge=0, le=2**53, alias="restartGeneration")


class DesiredDocument(DocumentModel):
    """What one device should run: config, modules, pipelines, drift policy,
    the deployments it came from, and the release keys to verify modules with."""

    version: Annotated[int, Field(ge=1)] = DESIRED_VERSION
    config: dict[str, Any] = {}
    deployments: list[Contributor] = []
    drift: DriftPolicyValue = DriftPolicy.REPORT
    modules: list[DesiredModule] = []
    # Each validated by fogline.pipeline on the node (see the module docstring).
    pipelines: list[dict[str, Any]] = []
    # Key name -> base64 of the Ed25519 key; scopes of the scoped ones (key
    # name -> module name patterns, see KeyScope). Present when there are modules.
    release_keys: dict[str, str] = Field(default={}, alias="releaseKeys")
    release_key_scopes: dict[str, list[str]] = Field(default={}, alias="releaseKeyScopes")
    rollback: RollbackMarker | None = None
    # Who may send readings to the node (HTTP ingest tokens, MQTT sensor
    # accounts); absent when no deployment declares any.
    sensors: SensorAccess | None = None

    def to_dict(self) -> dict[str, Any]:
        """The document as JSON types, exactly as it was given (the form its
        revision hashes)."""
        return self.model_dump(mode="json")

    def revision(self) -> str:
        """ "sha256:<hex>" of the document's canonical JSON."""
        return revision_of(self.to_dict())

    @property
    def corrects_drift(self) -> bool:
        """Whether drift is put back (`drift: correct`); any other policy,
        including one this version does not know, only reports."""
        return self.drift == DriftPolicy.CORRECT


class DesiredStateDoc(TolerantModel):
    """The answer of `GET /v1/desired`: the document and its revision (also
    the ETag). Read it with `parse_desired_state`, which checks the revision."""

    revision: str
    document: DesiredDocument


def parse_desired_state(data: bytes) -> DesiredStateDoc:
    """Read a desired state as served by the hub or saved by the node.

    In this order: the envelope, the revision against the document as
    received (fields this version does not know included), the document's
    version, then every field it knows.

    Raises:
        DesiredStateError: not a desired state or damaged (`revision` None),
            or intact but unusable here (`revision` set).
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DesiredStateError(f"desired state: not JSON: {exc}") from None
    revision = raw.get("revision") if isinstance(raw, dict) else None
    document = raw.get("document") if isinstance(raw, dict) else None
    if not isinstance(revision, str) or not isinstance(document, dict):
        raise DesiredStateError("desired state: expected an object with revision and document")
    try:
        actual = revision_of(document)
    except TypeError as exc:  # cannot happen for parsed JSON; kept for the contract
        raise DesiredStateError(f"desired state: {exc}") from None
    if actual != revision:
        raise DesiredStateError(
            f"desired state: the document hashes to {actual}, not its revision {revision}"
        )
    version = document.get("version", DESIRED_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > DESIRED_VERSION:
        raise DesiredStateError(
            f"desired state {revision}: document version {version} is newer than this "
            f"agent reads ({DESIRED_VERSION}); upgrade the agent",
            revision=revision,
        )
    try:
        parsed = DesiredDocument.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise DesiredStateError(
            f"desired state {revision}: {where}: {first['msg']} ({exc.error_count()} problem(s))",
            revision=revision,
        ) from None
    return DesiredStateDoc(revision=revision, document=parsed)
