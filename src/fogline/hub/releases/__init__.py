"""Module releases on the hub.

_artifacts  the artifact store: archives by content digest, written atomically
_registry   the checks a push must pass, and lookups of pushed releases
_refs       module references in deployments (`release: thermo-filter@1.2.0`)
_models     model releases named by infer steps, delivered by the same deployment
_agents     agent releases (kind: agent) in deployments: no module config or env
_sboms      release SBOMs: read from the signed archive at push, stored, shown
_gate       the vulnerability gate: what applied VulnerabilityPolicies block
_vulndb     the offline vulnerability database (OSV) and the advisories affecting releases
_deltas     deltas between releases for nodes that have the older one, cached
_offload    artifact offload: URLs signed for nginx's secure_link, the offload secret
_nginx      the nginx server block that serves the artifact directory to those URLs
_removal    removing releases and release keys, refused while something needs them
_errors     ReleaseRejectedError and the table of its codes
"""

from fogline.artifact import DIGEST_RE

from ._agents import check_agent_refs
from ._artifacts import ArtifactStore, StagedArtifact, check_digest
from ._deltas import DeltaCache, DeltaSettings, remove_deltas
from ._errors import ReleaseRejectedError
from ._gate import (
    AppliedPolicy,
    Block,
    blocks_for,
    check_deployments,
    check_rollout_resume,
    effective_policies,
    gate_push,
    mark_blocked,
    stored_policies,
)
from ._models import archive_kind, check_model_refs
from ._nginx import NginxSite, nginx_server_block
from ._offload import (
    OFFLOAD_SECRET_FILE,
    ArtifactOffload,
    OffloadConfigError,
    check_offload_url,
    offload_secret,
    sign_uri,
)
from ._refs import (
    downgrade_allowances,
    module_downgrades,
    resolve_module_refs,
    validate_module_block,
)
from ._registry import (
    MAX_RELEASE_BYTES,
    ReleaseView,
    check_archive,
    check_envelope,
    find_by_digest,
    find_release,
    list_releases,
    new_release_row,
    parse_signature_header,
    release_key_id,
    release_view,
)
from ._removal import remove_release, remove_release_key
from ._sboms import ReleaseSbom, attach_sbom, read_sbom, release_sbom
from ._vulndb import (
    Finding,
    ImportView,
    VulnDbStatus,
    advisory_known,
    find_affected,
    store_import,
    vulndb_status,
)

__all__ = [
    "DIGEST_RE",
    "MAX_RELEASE_BYTES",
    "OFFLOAD_SECRET_FILE",
    "AppliedPolicy",
    "ArtifactOffload",
    "ArtifactStore",
    "Block",
    "DeltaCache",
    "DeltaSettings",
    "Finding",
    "ImportView",
    "NginxSite",
    "OffloadConfigError",
    "ReleaseRejectedError",
    "ReleaseSbom",
    "ReleaseView",
    "StagedArtifact",
    "VulnDbStatus",
    "advisory_known",
    "archive_kind",
    "attach_sbom",
    "blocks_for",
    "check_agent_refs",
    "check_archive",
    "check_deployments",
    "check_digest",
    "check_envelope",
    "check_model_refs",
    "check_offload_url",
    "check_rollout_resume",
    "downgrade_allowances",
    "effective_policies",
    "find_affected",
    "find_by_digest",
    "find_release",
    "gate_push",
    "list_releases",
    "mark_blocked",
    "module_downgrades",
    "new_release_row",
    "nginx_server_block",
    "offload_secret",
    "parse_signature_header",
    "read_sbom",
    "release_key_id",
    "release_sbom",
    "release_view",
    "remove_deltas",
    "remove_release",
    "remove_release_key",
    "resolve_module_refs",
    "sign_uri",
    "store_import",
    "stored_policies",
    "validate_module_block",
    "vulndb_status",
]
