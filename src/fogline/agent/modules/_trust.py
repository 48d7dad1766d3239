"""Which release keys the node trusts, and which modules each key may sign.

Release keys: the node trusts the keys the hub gave it at enrollment and the
keys listed in its desired state (`releaseKeys`), both received over mTLS.
A signature thus protects against a tampered artifact store or transit, not
against a compromised hub (see docs/security.md).

Key scopes (which modules a key may sign) come from the same two sources:
`release_key_scopes` pinned at enrollment and `releaseKeyScopes` of the
desired state. A key listed by both must be allowed by both: the desired
state can narrow a pinned key's scope, never widen it, so a hub that later
lists a pinned key unscoped does not let it sign other modules on this node.
"""

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fogline.protocol import KeyScope, union_of_patterns

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def keys_from(encoded: Mapping[str, str]) -> dict[str, "Ed25519PublicKey"]:
    return {kid: key for kid, (key, _names) in _keys_by_id(encoded).items()}


def _keys_by_id(encoded: Mapping[str, Any]) -> dict[str, tuple["Ed25519PublicKey", list[str]]]:
    # Here, not at import: cryptography is about 8.5 MB an idle agent need
    # not hold (the keys are read when a release is verified).
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from fogline.artifact import key_id

    keys: dict[str, tuple[Ed25519PublicKey, list[str]]] = {}
    for name, value in encoded.items():
        try:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
        except (ValueError, TypeError):
            continue  # a malformed key trusts nothing; the hub validated it anyway
        keys.setdefault(key_id(key), (key, []))[1].append(str(name))
    return keys


def scopes_from(
    sources: list[tuple[Mapping[str, Any], Mapping[str, tuple[str, ...]]]],
) -> dict[str, KeyScope]:
    """Each key id's scope over trust sources of (key name -> base64 key,
    key name -> patterns): within a source, what any listing of the key
    allows; across sources, only what every source listing it allows."""
    scopes: dict[str, KeyScope] = {}
    for keys, patterns in sources:
        for kid, (_key, names) in _keys_by_id(keys).items():
            granted = union_of_patterns(patterns.get(name) for name in names)
            scopes[kid] = scopes.get(kid, KeyScope()).narrowed(KeyScope.of(granted))
    return scopes
