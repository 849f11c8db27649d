"""Byte encodings used on the wire: base64url without padding, standard base64, hex digests."""

from __future__ import annotations

import binascii
import hashlib

from ledger.errors import Malformed

# base64 and base64url differ in two characters; binascii does the rest, in C (the `base64`
# module's layers around it cost more than the decoding, which verification does per entry).
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return _encoded(data).decode("ascii")


def from_b64url(text: str) -> bytes:
    """Decode base64url without padding, refusing padding and non-alphabet characters."""
    if "=" in text or not text.isascii():
        raise Malformed("base64url must be unpadded ASCII")
    raw = text.encode("ascii")
    try:
        data = binascii.a2b_base64(raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4))
    except binascii.Error:
        raise Malformed("not valid base64url") from None
    if _encoded(data) != raw:
        raise Malformed("base64url is not in its canonical form")
    return data


def _encoded(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def sha256(data: bytes) -> bytes:
    """The SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()
