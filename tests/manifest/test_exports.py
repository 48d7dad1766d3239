"""The public surface of fogline.manifest is deliberate: adding or removing a name is a decision."""

import fogline.manifest
from fogline import FoglineError
from fogline.manifest import BlockError, ManifestError


def test_all_is_pinned() -> None:
    assert sorted(fogline.manifest.__all__) == sorted(
        [
            "API_VERSION",
            "KINDS",
            "MAX_DEPTH",
            "MAX_DOCUMENTS",
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
            "Problem",
            "ProvisioningClaim",
            "ReleaseKey",
            "Requirement",
            "Selector",
            "canonical_json",
            "compile_desired_state",
            "decode_public_key",
            "diff_documents",
            "load_manifests",
            "parse_duration",
            "parse_expiry",
            "parse_timestamp",
            "read_sources",
            "revision_of",
            "selectors_overlap",
        ]
    )
    for name in fogline.manifest.__all__:
        assert hasattr(fogline.manifest, name), name


def test_errors_hang_under_the_fogline_root() -> None:
    assert issubclass(ManifestError, FoglineError)
    assert issubclass(BlockError, FoglineError)
