"""Ed25519 keys: generation, PKCS#8 PEM files (mode 0600), key ids and wire encoding, and
signature checks.

Keys are `cryptography`'s objects; signatures are checked by libsodium (PyNaCl) wherever the
ledger checks one (on submit, by verification and bundle checks, for checkpoints, by the
subscriber's verifier), so that what one accepts the others accept. libsodium is strict where
OpenSSL (behind `cryptography`) is not: it refuses public keys and signature points of small
order, and non-canonical ones. OpenSSL accepts a signature of any message under the identity
point as public key (`R` the base point, `S` one): a universal forgery, were such a key bound.
libsodium is also about twice as fast (40 µs against 82 µs of CPU per verify, measured by
`bench/verify.py`). Wire-format and file keys must be points of the prime-order group, so no
such key is bound any more; one a store already holds is kept, unusable (`bound_public_key`).
"""

from __future__ import annotations

from pathlib import Path

import nacl.bindings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError

from ledger.encoding import b64url, from_b64url, sha256
from ledger.errors import LedgerError, Malformed
from ledger.files import FileRefused, write_private

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "bound_public_key",
    "generate",
    "kid",
    "load_private_key",
    "load_public_key",
    "public_key_b64",
    "public_key_from_b64",
    "raw_public_key",
    "save_private_key",
    "verify",
    "verify_bytes",
]

SIGNATURE_BYTES = 64


class KeyFileError(LedgerError):
    """A key file is missing, unreadable, of the wrong kind, or its passphrase is wrong."""

    code = "key_file"


def generate() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def raw_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of the public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def kid(key: Ed25519PrivateKey | Ed25519PublicKey | bytes) -> str:
    """Key id: base64url (no padding) of SHA-256 of the raw public key; 43 characters."""
    raw = key if isinstance(key, bytes) else raw_public_key(key)
    return b64url(sha256(raw))


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as it travels: base64url without padding of the raw 32 bytes."""
    return b64url(raw_public_key(key))


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """Parse a wire-format public key, a point of the prime-order group (see `bound_public_key`)."""
    public, unusable = bound_public_key(text)
    if unusable is not None:
        raise Malformed(unusable)
    return public


def bound_public_key(text: str) -> tuple[Ed25519PublicKey, str | None]:
    """The public key a stored `key.bound` entry holds, and why no signature can be checked
    under it (None if one can).

    Such a key is refused when it is bound (`public_key_from_b64`). One bound before that
    check, or written into the store behind the ledger's back, still stands in the record: the
    directory keeps it (it can be revoked) and nothing verifies under it.
    """
    raw = from_b64url(text)
    if len(raw) != 32:
        raise Malformed("an Ed25519 public key is 32 bytes")
    try:
        return _usable(raw), None
    except Malformed as exc:
        return Ed25519PublicKey.from_public_bytes(raw), exc.detail


def _usable(raw: bytes) -> Ed25519PublicKey:
    """The public key of those raw bytes, unless they are not a canonical point of the
    prime-order group (small-order points admit forgeries; libsodium refuses them)."""
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
        raise Malformed("not a usable Ed25519 public key: a small-order or non-canonical point")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(public: Ed25519PublicKey, signature: str, message: bytes) -> bool:
    """True when `signature` (base64url) is a valid Ed25519 signature of `message` by `public`."""
    try:
        raw = from_b64url(signature)
    except Malformed:
        return False
    return verify_bytes(public, raw, message)


def verify_bytes(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when the 64 bytes `signature` are a valid Ed25519 signature of `message` by
    `public`, as libsodium checks one (see the module's docstring)."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public.public_bytes_raw())
    except BadSignatureError:
        return False
    return True


def save_private_key(key: Ed25519PrivateKey, path: Path, passphrase: bytes | None = None) -> None:
    """Write `key` as PKCS#8 PEM and its public key to `path`.pub, both created with mode 0600,
    never overwriting a file nor writing through a symbolic link."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_path = Path(f"{path}.pub")
    if public_path.exists() or public_path.is_symlink():
        raise FileRefused(f"{public_path} exists; it is not overwritten")
    write_private(path, pem)
    write_private(public_path, (public_key_b64(key) + "\n").encode("ascii"))


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read a PKCS#8 PEM Ed25519 private key, refusing files others can read."""
    try:
        mode = path.stat().st_mode & 0o077
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    if mode:
        raise KeyFileError(f"key file {path} is readable by others; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except (ValueError, TypeError):
        raise KeyFileError(
            f"key file {path} is not a PKCS#8 PEM private key, or the passphrase is wrong"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} does not hold an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key file: base64url raw bytes (as `key new` writes) or a PEM public key."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read public key file {path}: {exc}") from None
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError:
            raise KeyFileError(f"{path} is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path} does not hold an Ed25519 public key")
        try:
            return _usable(key.public_bytes_raw())
        except Malformed as exc:
            raise KeyFileError(f"{path}: {exc.detail}") from None
    if text.startswith("-----BEGIN"):
        raise KeyFileError(f"{path} is not a public key; pass the .pub file")
    try:
        return public_key_from_b64(text)
    except Malformed as exc:
        raise KeyFileError(f"{path} is not a base64url Ed25519 public key: {exc.detail}") from None
