"""The public surface of fogline.artifact and its exception tree."""

import fogline.artifact as artifact
from fogline import FoglineError


def test_public_names_are_pinned() -> None:
    assert sorted(artifact.__all__) == [
        "Architecture",
        "ArtifactError",
        "Backoff",
        "DEFAULT_MAX_INSTALL_BYTES",
        "DEFAULT_MAX_INSTALL_FILES",
        "HealthCheck",
        "MAX_PATH_DEPTH",
        "MODULE_FILE",
        "ModuleKind",
        "ModuleSpec",
        "ModuleSpecError",
        "ReleaseInfo",
        "ReleaseKeyError",
        "ReleaseKeyPair",
        "ResourceLimits",
        "RestartPolicy",
        "SignatureEnvelope",
        "TreeEntry",
        "UnsafeArchiveError",
        "UntrustedReleaseError",
        "VerifiedRelease",
        "Version",
        "build_release",
        "check_release",
        "delete_tree",
        "find_unpack_leftovers",
        "generate_release_key",
        "key_id",
        "load_module_spec",
        "load_private_key",
        "load_public_key",
        "parse_semver",
        "public_key_base64",
        "public_key_pem",
        "read_module_spec_from_archive",
        "read_signature",
        "sha256_file",
        "sign_release",
        "signature_path",
        "signed_message",
        "supports_architecture",
        "unpack_release",
        "verify_release",
        "walk_tree",
    ]
    for name in artifact.__all__:
        assert getattr(artifact, name) is not None


def test_every_error_is_an_artifact_error_and_a_fogline_error() -> None:
    assert issubclass(artifact.ArtifactError, FoglineError)
    for error in (
        artifact.ModuleSpecError,
        artifact.UntrustedReleaseError,
        artifact.UnsafeArchiveError,
        artifact.ReleaseKeyError,
    ):
        assert issubclass(error, artifact.ArtifactError)
        assert error.__name__ in (artifact.__doc__ or "")
