"""What renewal reads of the node's own certificate (its validity and the key
id of the CA that issued it), from the DER, without cryptography.

The renewer asks at every wake-up; with cryptography's x509 an idle agent
held about 8.5 MB it used for nothing else (BENCHMARKS.md, "Agent idle RSS").
The file is the agent's own, written from the hub's answer over mTLS, and the
TLS layer (OpenSSL) loads and checks it; this reads three fields of it and
refuses anything it does not expect (ValueError), which the caller reports
as an unreadable certificate. tests/agent/test_certdates.py holds it to
cryptography's reading of the same certificates.

    Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature,
        issuer, validity SEQUENCE { notBefore, notAfter }, subject,
        subjectPublicKeyInfo, [1] OPTIONAL, [2] OPTIONAL, [3] extensions OPTIONAL }
    AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier OPTIONAL, ... }
"""

import binascii
import datetime as dt
from typing import Final, NamedTuple

_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_END: Final = b"-----END CERTIFICATE-----"
_SEQUENCE: Final = 0x30
_UTC_TIME: Final = 0x17
_GENERALIZED_TIME: Final = 0x18
_VERSION: Final = 0xA0  # [0] EXPLICIT
_EXTENSIONS: Final = 0xA3  # [3] EXPLICIT
_KEY_IDENTIFIER: Final = 0x80  # [0] IMPLICIT OCTET STRING
_OID: Final = 0x06
_OCTET_STRING: Final = 0x04
_AUTHORITY_KEY_ID: Final = bytes.fromhex("551d23")  # 2.5.29.35
_MAX_LENGTH_BYTES: Final = 4  # a length of up to 4 GiB; certificates are KiBs


class CertDates(NamedTuple):
    not_before: dt.datetime
    not_after: dt.datetime
    issuer_key_id: str | None  # hex, as fogline.security.issuer_key_id gives it


class _Element(NamedTuple):
    tag: int
    start: int  # of the value
    end: int


def _element(der: bytes, pos: int, end: int) -> _Element:
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, first = der[pos], der[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("a multi-byte DER tag")
    pos += 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if not 0 < size <= _MAX_LENGTH_BYTES or pos + size > end:
            raise ValueError("a bad DER length")
        length = int.from_bytes(der[pos : pos + size], "big")
        pos += size
    if pos + length > end:
        raise ValueError("truncated DER")
    return _Element(tag, pos, pos + length)


def _children(der: bytes, parent: _Element) -> list[_Element]:
    found, pos = [], parent.start
    while pos < parent.end:
        child = _element(der, pos, parent.end)
        found.append(child)
        pos = child.end
    return found


def _expect(element: _Element, tag: int, what: str) -> _Element:
    if element.tag != tag:
        raise ValueError(f"{what}: tag {element.tag:#04x}, expected {tag:#04x}")
    return element


def _time(der: bytes, element: _Element) -> dt.datetime:
    text = der[element.start : element.end].decode("ascii")
    # RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY >= 50: 19YY) through 2049,
    # GeneralizedTime YYYYMMDDHHMMSSZ from 2050; always seconds, always Z.
    if element.tag == _UTC_TIME and len(text) == 13:
        century = 1900 if int(text[:2]) >= 50 else 2000
        text = str(century + int(text[:2])) + text[2:]
    elif element.tag != _GENERALIZED_TIME or len(text) != 15:
        raise ValueError(f"a certificate time of tag {element.tag:#04x}: {text!r}")
    if not (text.endswith("Z") and text[:-1].isdigit()):
        raise ValueError(f"a certificate time not in UTC seconds: {text!r}")
    return dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)


def _issuer_key_id(der: bytes, extensions: _Element) -> str | None:
    for extension in _children(der, _expect(_children(der, extensions)[0], _SEQUENCE, "ext")):
        parts = _children(der, _expect(extension, _SEQUENCE, "extension"))
        oid = _expect(parts[0], _OID, "extension id")
        if der[oid.start : oid.end] != _AUTHORITY_KEY_ID:
            continue
        value = _expect(parts[-1], _OCTET_STRING, "extension value")
        aki = _expect(_element(der, value.start, value.end), _SEQUENCE, "authority key id")
        for field in _children(der, aki):
            if field.tag == _KEY_IDENTIFIER:
                return der[field.start : field.end].hex()
        return None
    return None


def cert_dates(pem: bytes) -> CertDates:
    """The first certificate of `pem`: its validity and issuer's key id.

    Raises:
        ValueError: no PEM certificate, or DER this does not read.
    """
    begin = pem.find(_BEGIN)
    end = pem.find(_END, begin)
    if begin < 0 or end < 0:
        raise ValueError("no PEM certificate")
    try:
        der = binascii.a2b_base64(
            b"".join(pem[begin + len(_BEGIN) : end].split()), strict_mode=True
        )
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from None
    certificate = _expect(_element(der, 0, len(der)), _SEQUENCE, "certificate")
    tbs = _expect(_children(der, certificate)[0], _SEQUENCE, "tbsCertificate")
    fields = _children(der, tbs)
    first = 1 if fields and fields[0].tag == _VERSION else 0
    if len(fields) < first + 6:
        raise ValueError("a tbsCertificate with too few fields")
    validity = _children(der, _expect(fields[first + 3], _SEQUENCE, "validity"))
    if len(validity) != 2:
        raise ValueError("a validity of other than two times")
    issuer_key_id = None
    for field in fields[first + 6 :]:
        if field.tag == _EXTENSIONS:
            issuer_key_id = _issuer_key_id(der, field)
    return CertDates(_time(der, validity[0]), _time(der, validity[1]), issuer_key_id)
