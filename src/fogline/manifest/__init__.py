"""Fleet manifests: schema, validation, selectors, compile and diff. No I/O
except reading manifest files in `read_sources`.

    sources = read_sources("fleet/")            # files, a directory, or "-"
    manifests = load_manifests(sources)         # raises ManifestError
    state = compile_desired_state(manifests.deployments, device_labels)
    changes = diff_documents(previous_document, state.document)

Errors (see fogline._errors for the root):

    FoglineError
      ManifestError   the operator's manifests are wrong; `.problems` holds one
                      Problem(file, line, column, path, reason) per mistake,
                      str() renders `fleet.yaml:12:7: spec.priority: reason`
      SelectorSyntaxError  a one-line selector (`parse_selector`) does not parse:
                      `.reason` says why
      BlockError      raised by a BlockValidators callable for one field of a
                      module, pipeline or rollout block; load_manifests turns
                      it into a Problem, so callers never see it

Anything else escaping this package is a bug.
"""

from typing import TYPE_CHECKING

from fogline._duration import parse_duration
from fogline._lazy import lazy_exports

from ._errors import BlockError, ManifestError, Problem
from ._expiry import parse_expiry, parse_timestamp
from ._selector import Operator, Requirement, Selector, selectors_overlap
from ._yaml import (
    MAX_DEPTH,
    MAX_DOCUMENTS,
    MAX_SOURCE_BYTES,
    MAX_TOTAL_BYTES,
    ManifestSource,
    read_sources,
)

if TYPE_CHECKING:
    from ._compile import DesiredState, compile_desired_state, revision_of
    from ._diff import FieldChange, diff_documents
    from ._json import JsonValue, canonical_json
    from ._load import load_manifests
    from ._model import (
        BlockValidator,
        BlockValidators,
        Deployment,
        DriftPolicy,
        ManifestSet,
        Origin,
        PolicyException,
        ProvisioningClaim,
        ReleaseKey,
        VulnerabilityPolicy,
    )
    from ._schema import API_VERSION, KINDS, release_key_document
    from ._schema_checks import decode_public_key
    from ._selector_text import MAX_SELECTOR_CHARS, SelectorSyntaxError, parse_selector

# Imported on first use: the schema and the compiler bring pydantic and the
# wire models (fogline.protocol), a quarter of a second of start-up that
# `fogline apply`, which only reads the files and sends them, never needs.
__getattr__ = lazy_exports(
    __name__,
    {
        "DesiredState": "._compile",
        "compile_desired_state": "._compile",
        "revision_of": "._compile",
        "FieldChange": "._diff",
        "diff_documents": "._diff",
        "JsonValue": "._json",
        "canonical_json": "._json",
        "load_manifests": "._load",
        "BlockValidator": "._model",
        "BlockValidators": "._model",
        "Deployment": "._model",
        "DriftPolicy": "._model",
        "ManifestSet": "._model",
        "Origin": "._model",
        "PolicyException": "._model",
        "ProvisioningClaim": "._model",
        "ReleaseKey": "._model",
        "VulnerabilityPolicy": "._model",
        "API_VERSION": "._schema",
        "KINDS": "._schema",
        "decode_public_key": "._schema_checks",
        "release_key_document": "._schema",
        "MAX_SELECTOR_CHARS": "._selector_text",
        "SelectorSyntaxError": "._selector_text",
        "parse_selector": "._selector_text",
    },
)

__all__ = [
    "API_VERSION",
    "KINDS",
    "MAX_DEPTH",
    "MAX_DOCUMENTS",
    "MAX_SELECTOR_CHARS",
    "MAX_SOURCE_BYTES",
    "MAX_TOTAL_BYTES",
    "BlockError",
    "BlockValidator",
    "BlockValidators",
    "Deployment",
    "DesiredState",
    "DriftPolicy",
    "FieldChange",
    "JsonValue",
    "ManifestError",
    "ManifestSet",
    "ManifestSource",
    "Operator",
    "Origin",
    "PolicyException",
    "Problem",
    "ProvisioningClaim",
    "ReleaseKey",
    "Requirement",
    "Selector",
    "SelectorSyntaxError",
    "VulnerabilityPolicy",
    "canonical_json",
    "compile_desired_state",
    "decode_public_key",
    "diff_documents",
    "load_manifests",
    "parse_duration",
    "parse_expiry",
    "parse_selector",
    "parse_timestamp",
    "read_sources",
    "release_key_document",
    "revision_of",
    "selectors_overlap",
]
