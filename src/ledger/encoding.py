"""Byte encodings used on the wire: base64url without padding, standard base64, hex digests."""

from __future__ import annotations

import base64
import binascii
import hashlib

from ledger.errors import Malformed


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    """Decode base64url without padding, refusing padding and non-alphabet characters."""
    if "=" in text or not text.isascii():
        raise Malformed("base64url must be unpadded ASCII")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Malformed("not valid base64url") from None
    if b64url(data) != text:
        raise Malformed("base64url is not in its canonical form")
    return data


def sha256(data: bytes) -> bytes:
    """The SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()
