"""The Update Framework (python-tuf) as Fogline uses it: metadata layout,
the offline root directory, and the errors shared by CLI, hub and node.

See `_metadata` for the roles and paths; the hub's side is hub/_tuf.py, the
node's is agent/updater/_tuf.py.

Errors:

    FoglineError
      TufError                  base of this package
        TufMetadataError        metadata is malformed or does not verify: role, reason
        TufKeyError             a key file that cannot sign: path, reason
"""

from ._errors import TufError, TufKeyError, TufMetadataError
from ._metadata import (
    MAX_METADATA_BYTES,
    MODULE_ROLE_PREFIX,
    ROLE_RE,
    ROOT,
    SNAPSHOT,
    TARGETS,
    TIMESTAMP,
    TOP_LEVEL,
    add_release,
    delegate_module,
    load_signer,
    module_role,
    new_module_role,
    new_root,
    new_targets,
    parse,
    public_key,
    sign_with,
    target_path,
    to_bytes,
    utcnow,
    verify_signed_by,
)
from ._offline import OfflineRepo

__all__ = [
    "MAX_METADATA_BYTES",
    "MODULE_ROLE_PREFIX",
    "ROLE_RE",
    "ROOT",
    "SNAPSHOT",
    "TARGETS",
    "TIMESTAMP",
    "TOP_LEVEL",
    "OfflineRepo",
    "TufError",
    "TufKeyError",
    "TufMetadataError",
    "add_release",
    "delegate_module",
    "load_signer",
    "module_role",
    "new_module_role",
    "new_root",
    "new_targets",
    "parse",
    "public_key",
    "sign_with",
    "target_path",
    "to_bytes",
    "utcnow",
    "verify_signed_by",
]
