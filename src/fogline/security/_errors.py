"""Errors of the security package.

FoglineError
  SecurityError          base of this package
    CsrRejectedError     the device's certificate request is unacceptable
    TokenError           a token is malformed (never says which secret)
"""

from fogline._errors import FoglineError


class SecurityError(FoglineError):
    """Base class of security errors."""


class CsrRejectedError(SecurityError):
    """A CSR was refused: weak key, bad signature, bad subject or too large."""


class TokenError(SecurityError):
    """A bearer or claim token does not have the expected shape."""
