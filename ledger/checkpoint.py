"""Checkpoints: a C2SP `tlog-checkpoint` (origin, tree size, root) signed as a C2SP
`signed-note` with the ledger's Ed25519 key, so tools written elsewhere can check ours.

    <origin>\\n<size>\\n<base64 root>\\n\\n— <origin> <base64(key hash || signature)>\\n

The key hash is the first 4 bytes of SHA-256(origin || 0x0A || 0x01 || raw public key); the
signature is Ed25519 over the body (the first three lines).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.keys import Ed25519PrivateKey, Ed25519PublicKey, raw_public_key, verify_bytes

_ED25519 = b"\x01"
_DASH = "\u2014"


class CheckpointInvalid(LedgerError):
    """A checkpoint is malformed, names another ledger, or is not signed by its key."""

    code = "checkpoint_invalid"


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the tree: `size` leaves with this `root` (raw 32 bytes)."""

    origin: str
    size: int
    root: bytes
    note: str  # the signed note's exact text

    @property
    def body(self) -> str:
        return body(self.origin, self.size, self.root)


def body(origin: str, size: int, root: bytes) -> str:
    """The checkpoint body: the text that is signed."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def key_hash(origin: str, public: Ed25519PublicKey) -> bytes:
    """The signed-note key hash of an Ed25519 key named `origin`."""
    return hashlib.sha256(origin.encode() + b"\n" + _ED25519 + raw_public_key(public)).digest()[:4]


def sign(origin: str, size: int, root: bytes, key: Ed25519PrivateKey) -> Checkpoint:
    """Sign a checkpoint of the tree with the ledger key."""
    # As Go's note package: a key name is non-empty, without white space or "+".
    if not origin or "+" in origin or any(c.isspace() for c in origin):
        raise CheckpointInvalid(f"{origin!r} cannot name a signed-note key")
    text = body(origin, size, root)
    signature = key_hash(origin, key.public_key()) + key.sign(text.encode())
    note = f"{text}\n{_DASH} {origin} {base64.b64encode(signature).decode()}\n"
    return Checkpoint(origin, size, root, note)


def parse(note: str, origin: str, public: Ed25519PublicKey) -> Checkpoint:
    """Parse and verify a signed checkpoint of the ledger `origin` signed by `public`."""
    text, separator, signatures = note.partition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise CheckpointInvalid("a signed note is a body, a blank line and signature lines")
    lines = text.split("\n")
    if len(lines) < 3:
        raise CheckpointInvalid("a checkpoint body has an origin, a size and a root hash")
    name, size_text, root_text = lines[:3]
    if name != origin:
        raise CheckpointInvalid(f"the checkpoint is of {name!r}, not {origin!r}")
    if not (size_text.isascii() and size_text.isdigit()) or (
        size_text != "0" and size_text.startswith("0")
    ):
        raise CheckpointInvalid(f"tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character
        raise CheckpointInvalid("the root hash is not standard base64") from None
    if len(root) != 32:
        raise CheckpointInvalid("the root hash is not 32 bytes")
    if any(not line or any(c < " " or c == "\x7f" for c in line) for line in lines[3:]):
        raise CheckpointInvalid("an extension line is empty or holds control characters")
    expected = key_hash(origin, public)
    signed = (text + "\n").encode()
    verified = False
    for line in signatures[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise CheckpointInvalid(f"not a signature line: {line!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise CheckpointInvalid("a signature is not standard base64") from None
        if parts[1] != origin or blob[:4] != expected:
            continue  # another key's cosignature: not ours to check
        if not verify_bytes(public, blob[4:], signed):
            raise CheckpointInvalid("the ledger key's signature does not verify")
        verified = True
    if not verified:
        raise CheckpointInvalid("the checkpoint carries no signature by the ledger key")
    return Checkpoint(origin, int(size_text), root, note)
