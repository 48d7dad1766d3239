"""The one error of the release API: a push or lookup the hub refuses.

A push is refused, with a code naming the reason, when:

    malformed_signature  422  no or unreadable `x-fogline-signature` envelope
    untrusted_key        403  signed by a key no applied ReleaseKey trusts, or by a
                              key whose scope (`modules:`) does not cover the module
    bad_signature        422  the signature does not verify
    digest_mismatch      422  the bytes uploaded are not the bytes signed
    bad_archive          422  not a release archive, an invalid module file, or an
                              archive the node's unpacker refuses (the member and
                              the reason: depth, traversal, links, devices,
                              entries, bytes unpacked, time to check)
    release_mismatch     422  the archive's module file names another name/version
    version_conflict     409  this name and version were pushed with other bytes
    too_large            413  over MAX_RELEASE_BYTES
    vulnerable           422  a VulnerabilityPolicy with `onPush: refuse` blocks an
                              advisory affecting a package its SBOM names

FoglineError
  ApiError (hub._errors)
    ReleaseRejectedError  422/403/409/413/503, `code` as in the table above
"""

from .._errors import ApiError


class ReleaseRejectedError(ApiError):
    """A push or lookup the hub refuses; `code` names the reason (module docstring)."""

    status = 422

    def __init__(
        self, code: str, message: str, *, status: int = 422, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.code, self.status = code, status
