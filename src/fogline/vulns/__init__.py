"""Vulnerability data in the OSV format, read offline, and matching with real
version semantics (PEP 440 for PyPI, Semantic Versioning for npm).

`read_osv_zip` reads an OSV zip (or `zip_directory` a directory of OSV
files) with every size bounded; `parse_advisory` checks one file;
`affects` says whether an advisory affects a package version;
`advisory_score` gives its CVSS base score. No I/O beyond the bytes given.

FoglineError
  VulnError
    AdvisoryError     an OSV file is malformed: the file, the field and the reason
    VulnArchiveError  an OSV zip or directory is malformed or too large
"""

from typing import TYPE_CHECKING

from fogline._lazy import lazy_exports

from ._errors import AdvisoryError, VulnArchiveError, VulnError
from ._limits import MAX_IMPORT_BYTES

if TYPE_CHECKING:
    from ._archive import ParsedAdvisory, read_osv_zip, zip_directory
    from ._match import SUPPORTED_ECOSYSTEMS, affects, package_name
    from ._osv import MAX_ADVISORY_BYTES, Advisory, parse_advisory
    from ._severity import LEVEL_FLOOR, Level, advisory_score, level_of

# Imported on first use: the OSV models, CVSS, semver and packaging are
# needed by a vulnerability import or a release gate, never by a device's
# request, and each hub worker kept them resident (about 1.5 MB).
__getattr__ = lazy_exports(
    __name__,
    {
        "ParsedAdvisory": "._archive",
        "read_osv_zip": "._archive",
        "zip_directory": "._archive",
        "SUPPORTED_ECOSYSTEMS": "._match",
        "affects": "._match",
        "package_name": "._match",
        "MAX_ADVISORY_BYTES": "._osv",
        "Advisory": "._osv",
        "parse_advisory": "._osv",
        "LEVEL_FLOOR": "._severity",
        "Level": "._severity",
        "advisory_score": "._severity",
        "level_of": "._severity",
    },
)

__all__ = [
    "LEVEL_FLOOR",
    "MAX_ADVISORY_BYTES",
    "MAX_IMPORT_BYTES",
    "SUPPORTED_ECOSYSTEMS",
    "Advisory",
    "AdvisoryError",
    "Level",
    "ParsedAdvisory",
    "VulnArchiveError",
    "VulnError",
    "advisory_score",
    "affects",
    "level_of",
    "package_name",
    "parse_advisory",
    "read_osv_zip",
    "zip_directory",
]
