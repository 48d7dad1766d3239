"""fogline.artifact's exception tree."""

import fogline.artifact as artifact
from fogline import FoglineError


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
