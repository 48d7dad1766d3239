"""The manifest package's error tree (its public names are pinned in tests/test_exports.py)."""

from fogline import FoglineError
from fogline.manifest import BlockError, ManifestError


def test_errors_hang_under_the_fogline_root() -> None:
    assert issubclass(ManifestError, FoglineError)
    assert issubclass(BlockError, FoglineError)
