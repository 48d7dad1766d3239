"""Module releases: the `fogline-module.yaml` format, reproducible archives,
Ed25519 signatures, and safe unpacking. See docs/releases.md.

A release is a zstd-compressed PAX tar of a module directory whose first
entry is `fogline-module.yaml`. `build_release` makes it reproducibly,
`sign_release` writes `ARCHIVE.sig`, `verify_release` (pure) checks it
against the pinned keys, `unpack_release` installs it refusing anything
hostile, and `check_release` runs the same checks without keeping anything
(the hub, at push). Each archive carries its CycloneDX SBOM as its second
entry (`read_release_sbom`), so the signature covers it. `walk_tree` and
`delete_tree` walk and delete trees of any depth without recursion, for
every tree an archive or a module shaped.

FoglineError
  ArtifactError
    ModuleSpecError        the author's fogline-module.yaml is wrong: file, field, reason
    UntrustedReleaseError  signature, digest or key do not check out; do not install
    UnsafeArchiveError     hostile, malformed or oversized archive (or a directory
                           that would make one): the member and the reason
    ReleaseKeyError        a key file is missing, malformed, or would be overwritten
"""

from typing import TYPE_CHECKING

from fogline._lazy import lazy_exports

from ._digest import DIGEST_RE, is_digest, sha256_file
from ._errors import (
    ArtifactError,
    ModuleSpecError,
    ReleaseKeyError,
    UnsafeArchiveError,
    UntrustedReleaseError,
)
from ._members import DEFAULT_MAX_INSTALL_BYTES, DEFAULT_MAX_INSTALL_FILES, MAX_PATH_DEPTH
from ._semver import Version, parse_semver
from ._spec import (
    AGENT_MODULE,
    MODULE_FILE,
    Architecture,
    Backoff,
    HealthCheck,
    ModuleKind,
    ModuleSpec,
    ResourceLimits,
    RestartPolicy,
    load_module_spec,
    load_module_spec_cached,
    supports_architecture,
)
from ._tree import TreeEntry, delete_tree, find_unpack_leftovers, walk_tree

if TYPE_CHECKING:
    from ._build import ReleaseInfo, build_release
    from ._keys import (
        ReleaseKeyPair,
        generate_release_key,
        key_id,
        load_private_key,
        load_public_key,
        public_key_base64,
        public_key_pem,
    )
    from ._sbom import (
        SBOM_FILE,
        SbomPackage,
        read_release_sbom,
        sbom_packages,
        sbom_path,
    )
    from ._signing import (
        SignatureEnvelope,
        VerifiedRelease,
        read_signature,
        sign_release,
        signature_path,
        signed_message,
        verify_release,
    )
    from ._unpack import (
        check_release,
        read_module_spec_from_archive,
        unpack_release,
    )

# Imported on first use: building, SBOMs, keys, signatures and unpacking
# are needed by the agent only when an update comes, and never at idle (the
# keys and signatures import cryptography: about 8.5 MB resident).
__getattr__ = lazy_exports(
    __name__,
    {
        "ReleaseKeyPair": "._keys",
        "generate_release_key": "._keys",
        "key_id": "._keys",
        "load_private_key": "._keys",
        "load_public_key": "._keys",
        "public_key_base64": "._keys",
        "public_key_pem": "._keys",
        "ReleaseInfo": "._build",
        "build_release": "._build",
        "SBOM_FILE": "._sbom",
        "SbomPackage": "._sbom",
        "read_release_sbom": "._sbom",
        "sbom_packages": "._sbom",
        "sbom_path": "._sbom",
        "SignatureEnvelope": "._signing",
        "VerifiedRelease": "._signing",
        "read_signature": "._signing",
        "sign_release": "._signing",
        "signature_path": "._signing",
        "signed_message": "._signing",
        "verify_release": "._signing",
        "check_release": "._unpack",
        "read_module_spec_from_archive": "._unpack",
        "unpack_release": "._unpack",
    },
)

__all__ = [
    "AGENT_MODULE",
    "DEFAULT_MAX_INSTALL_BYTES",
    "DEFAULT_MAX_INSTALL_FILES",
    "DIGEST_RE",
    "MAX_PATH_DEPTH",
    "MODULE_FILE",
    "SBOM_FILE",
    "Architecture",
    "ArtifactError",
    "Backoff",
    "HealthCheck",
    "ModuleKind",
    "ModuleSpec",
    "ModuleSpecError",
    "ReleaseInfo",
    "ReleaseKeyError",
    "ReleaseKeyPair",
    "ResourceLimits",
    "RestartPolicy",
    "SbomPackage",
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
    "is_digest",
    "key_id",
    "load_module_spec",
    "load_module_spec_cached",
    "load_private_key",
    "load_public_key",
    "parse_semver",
    "public_key_base64",
    "public_key_pem",
    "read_module_spec_from_archive",
    "read_release_sbom",
    "read_signature",
    "sbom_packages",
    "sbom_path",
    "sha256_file",
    "sign_release",
    "signature_path",
    "signed_message",
    "supports_architecture",
    "unpack_release",
    "verify_release",
    "walk_tree",
]
