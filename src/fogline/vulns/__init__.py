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

from ._archive import (
    MAX_IMPORT_BYTES,
    ParsedAdvisory,
    read_osv_zip,
    zip_directory,
)
from ._errors import AdvisoryError, VulnArchiveError, VulnError
from ._match import SUPPORTED_ECOSYSTEMS, affects, package_name
from ._osv import MAX_ADVISORY_BYTES, Advisory, parse_advisory
from ._severity import LEVEL_FLOOR, Level, advisory_score, level_of

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
