"""Errors of the security package.

FoglineError
  SecurityError          base of this package
    CsrRejectedError     the device's certificate request is unacceptable
    CaKeyError           the CA key cannot be used: encrypted without (or with
                         the wrong) passphrase, damaged, or not the bundle's CA
    TokenError           a token is malformed (never says which secret)
    TokenFileError       a token file is missing, empty, too large, or open
                         to group or others
    SealedFileError      a sealed (passphrase-encrypted) file cannot be opened
      WrongPassphraseError    the passphrase does not open it
      DamagedSealedFileError  not a sealed file, changed, truncated, or too new
"""

from fogline._errors import FoglineError


class SecurityError(FoglineError):
    """Base class of security errors."""


class CsrRejectedError(SecurityError):
    """A CSR was refused: weak key, bad signature, bad subject or too large."""


class CaKeyError(SecurityError):
    """The fleet CA's key cannot be opened or does not match its certificate."""


class TokenError(SecurityError):
    """A bearer or claim token does not have the expected shape."""


class TokenFileError(SecurityError):
    """A file meant to hold a token cannot be used: the message names it and why."""


class SealedFileError(SecurityError):
    """A sealed file cannot be opened; nothing of it may be used."""


class WrongPassphraseError(SealedFileError):
    """The passphrase does not open the sealed file (or its header is damaged)."""


class DamagedSealedFileError(SealedFileError):
    """Not a sealed file, or one that was changed, cut short or made by a newer format."""
