"""Checkpoints: C2SP tlog-checkpoint bodies signed as C2SP signed notes with the
ledger's Ed25519 key, readable by other implementations and refused when anything is off."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import checkpoint
from ledger.checkpoint import CheckpointInvalid

ORIGIN = "clinic.example/accord"
LEDGER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ledger key").digest())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"another key").digest())
ROOT = hashlib.sha256(b"some tree").digest()
DASH = "\u2014"

# golang.org/x/mod sumdb/note/note_test.go (github.com/golang/mod): the "PeterNeumann" signer
# and verifier keys, the "EnochRoot" verifier key, and the note they sign in TestSign / TestOpen.
# A Go key string is <name>+<hex key hash>+base64(0x01 || 32-byte key).
PETER_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VERIFIER = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_NOTE_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIGNATURE_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIGNATURE_LINE = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33"
    "WWd1RvMc+QQ=\n"
)

# google/trillian-examples formats/log/checkpoint_test.go, TestSumDBNoteParsing: a tree head of
# the Go checksum database, signed by the published sum.golang.org key.
SUMDB_VERIFIER = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n"
    "6476701\n"
    "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
    "\n"
    "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEP"
    "WL+o3GeoWwOoAw=\n"
)


def go_key(text: str) -> tuple[str, bytes, bytes]:
    """(name, key hash, raw 32-byte key) of a Go note key string."""
    name, key_hash, encoded = text.removeprefix("PRIVATE+KEY+").split("+", 2)
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x01 and len(raw) == 33  # algorithm 0x01: Ed25519
    return name, bytes.fromhex(key_hash), raw[1:]


def raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def c2sp_key_id(name: str, key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """c2sp.org/signed-note: SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + raw(key)).digest()[:4]


def signature_line(name: str, key: Ed25519PrivateKey, text: str) -> str:
    blob = c2sp_key_id(name, key) + key.sign(text.encode())
    return f"{DASH} {name} {base64.b64encode(blob).decode()}\n"


def signed_note(text: str, *lines: str) -> str:
    return text + "\n" + "".join(lines)


def ledger_signed(text: str) -> str:
    """A note over `text` signed by the ledger key, built here without the code under test."""
    return signed_note(text, signature_line(ORIGIN, LEDGER_KEY, text))


def c2sp_body(origin: str, size: int | str, root: bytes | str) -> str:
    root_text = root if isinstance(root, str) else base64.b64encode(root).decode()
    return f"{origin}\n{size}\n{root_text}\n"


def parse(note: str) -> checkpoint.Checkpoint:
    return checkpoint.parse(note, ORIGIN, LEDGER_KEY.public_key())


def refused(note: str) -> bool:
    try:
        parse(note)
    except CheckpointInvalid:
        return True
    return False


# Key names per c2sp.org/signed-note: non-empty, no Unicode spaces, no "+", no control characters.
key_names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")).filter(
        lambda c: c not in "+\x85"
    ),
    min_size=1,
    max_size=40,
)
sizes = st.integers(min_value=0, max_value=2**64 - 1)
roots = st.binary(min_size=32, max_size=32)


# --- Signing and reading back. ---


@settings(max_examples=100, deadline=None)
@given(key_names, sizes, roots)
def test_a_signed_checkpoint_parses_back_to_its_origin_size_and_root(
    origin: str, size: int, root: bytes
) -> None:
    signed = checkpoint.sign(origin, size, root, LEDGER_KEY)
    parsed = checkpoint.parse(signed.note, origin, LEDGER_KEY.public_key())
    assert (parsed.origin, parsed.size, parsed.root) == (origin, size, root)
    assert parsed.note == signed.note
    assert (signed.origin, signed.size, signed.root) == (origin, size, root)
    assert parsed == signed


@settings(max_examples=100, deadline=None)
@given(key_names, sizes, roots)
def test_the_note_is_the_c2sp_body_a_blank_line_and_one_signature_by_the_origin_key(
    origin: str, size: int, root: bytes
) -> None:
    body = c2sp_body(origin, size, root)
    signed = checkpoint.sign(origin, size, root, LEDGER_KEY)
    assert checkpoint.body(origin, size, root) == signed.body == body
    # Ed25519 is deterministic, so the whole note is known byte for byte.
    assert signed.note == signed_note(body, signature_line(origin, LEDGER_KEY, body))


def test_the_body_is_the_c2sp_tlog_checkpoint_example_body() -> None:
    # c2sp.org/tlog-checkpoint (C2SP/C2SP tlog-checkpoint.md), the example checkpoint's text.
    root = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.body("example.com/behind-the-sofa", 20852163, root) == (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_a_checkpoint_of_the_empty_tree_has_size_zero() -> None:
    empty = hashlib.sha256(b"").digest()
    note = checkpoint.sign(ORIGIN, 0, empty, LEDGER_KEY).note
    assert note.startswith(f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n")
    assert parse(note).size == 0


def test_a_note_signed_independently_by_the_ledger_key_is_accepted() -> None:
    parsed = parse(ledger_signed(c2sp_body(ORIGIN, 42, ROOT)))
    assert (parsed.origin, parsed.size, parsed.root) == (ORIGIN, 42, ROOT)


# --- The key hash. ---


@settings(max_examples=50, deadline=None)
@given(key_names, st.binary(min_size=32, max_size=32))
def test_the_key_hash_is_the_c2sp_signed_note_key_id(name: str, seed: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert checkpoint.key_hash(name, key.public_key()) == c2sp_key_id(name, key)


@pytest.mark.parametrize("verifier", [PETER_VERIFIER, ENOCH_VERIFIER, SUMDB_VERIFIER])
def test_the_key_hash_of_published_go_note_keys_is_their_published_key_hash(verifier: str) -> None:
    name, key_hash, raw_key = go_key(verifier)
    assert checkpoint.key_hash(name, Ed25519PublicKey.from_public_bytes(raw_key)) == key_hash


def test_a_checkpoint_signed_with_the_published_go_key_carries_its_published_key_hash() -> None:
    name, key_hash, seed = go_key(PETER_SIGNER)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert raw(key) == go_key(PETER_VERIFIER)[2]
    # The published note, reproduced byte for byte from the key hash and an Ed25519 signature.
    blob = checkpoint.key_hash(name, key.public_key()) + key.sign(GO_NOTE_TEXT.encode())
    assert f"{DASH} {name} {base64.b64encode(blob).decode()}\n" == PETER_SIGNATURE_LINE
    # A checkpoint signed under that name and key is signed the same way.
    signed = checkpoint.sign(name, 7, ROOT, key)
    line = signed.note.split("\n\n", 1)[1]
    assert line.startswith(f"{DASH} {name} ")
    assert line.endswith("\n")
    blob = base64.b64decode(line.removesuffix("\n").split(" ")[2], validate=True)
    assert blob[:4] == key_hash
    key.public_key().verify(blob[4:], signed.body.encode())
    assert checkpoint.parse(signed.note, name, key.public_key()) == signed


def test_the_published_sumdb_tree_head_is_signed_over_exactly_the_body_this_module_writes() -> None:
    name, key_hash, raw_key = go_key(SUMDB_VERIFIER)
    public = Ed25519PublicKey.from_public_bytes(raw_key)
    text, line = SUMDB_NOTE.split("\n\n")
    root = base64.b64decode(text.split("\n")[2])
    assert checkpoint.body("go.sum database tree", 6476701, root) == text + "\n"
    blob = base64.b64decode(line.removeprefix(f"{DASH} {name} ").removesuffix("\n"), validate=True)
    assert blob[:4] == key_hash == checkpoint.key_hash(name, public)
    public.verify(blob[4:], checkpoint.body("go.sum database tree", 6476701, root).encode())


def test_a_signature_under_a_key_name_other_than_the_origin_is_not_the_ledgers() -> None:
    # The sumdb tree head is signed as "sum.golang.org", not as its origin line.
    public = Ed25519PublicKey.from_public_bytes(go_key(SUMDB_VERIFIER)[2])
    with pytest.raises(CheckpointInvalid):
        checkpoint.parse(SUMDB_NOTE, "go.sum database tree", public)


# --- Cosignatures and other keys' lines. ---

BODY = c2sp_body(ORIGIN, 42, ROOT)
OURS = signature_line(ORIGIN, LEDGER_KEY, BODY)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([OURS, signature_line("witness.example/w1", OTHER_KEY, BODY)], id="after"),
        pytest.param([signature_line("witness.example/w1", OTHER_KEY, BODY), OURS], id="before"),
        pytest.param([OURS, ENOCH_SIGNATURE_LINE], id="published-go-line"),
        pytest.param([signature_line(ORIGIN, OTHER_KEY, BODY), OURS], id="our-name-other-key"),
        pytest.param(
            [signature_line("witness.example/w1", OTHER_KEY, "another text\n"), OURS],
            id="not-even-over-this-body",
        ),
    ],
)
def test_a_cosignature_by_another_key_is_ignored_and_ours_still_verifies(lines: list[str]) -> None:
    parsed = parse(signed_note(BODY, *lines))
    assert (parsed.origin, parsed.size, parsed.root) == (ORIGIN, 42, ROOT)


def test_a_go_signed_note_carrying_the_published_cosignature_verifies_with_the_go_key() -> None:
    name, _, seed = go_key(PETER_SIGNER)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signed = checkpoint.sign(name, 7, ROOT, key)
    parsed = checkpoint.parse(signed.note + ENOCH_SIGNATURE_LINE, name, key.public_key())
    assert (parsed.size, parsed.root) == (7, ROOT)


def test_a_note_signed_only_by_other_keys_is_refused() -> None:
    assert refused(signed_note(BODY, signature_line("witness.example/w1", OTHER_KEY, BODY)))
    assert refused(signed_note(BODY, signature_line(ORIGIN, OTHER_KEY, BODY)))
    assert refused(signed_note(BODY, ENOCH_SIGNATURE_LINE))


@pytest.mark.parametrize("ours_first", [True, False], ids=["good-then-bad", "bad-then-good"])
def test_a_failing_signature_by_the_ledger_key_refuses_the_note_even_beside_a_good_one(
    ours_first: bool,
) -> None:
    # c2sp.org/signed-note: "If a signature from a known key fails to verify, clients SHOULD
    # reject the whole note." The answer must not depend on the order of the lines.
    bad = signature_line(ORIGIN, LEDGER_KEY, c2sp_body(ORIGIN, 43, ROOT))
    lines = [OURS, bad] if ours_first else [bad, OURS]
    assert refused(signed_note(BODY, *lines))


# --- Refusals: changed after signing. ---


def replace_once(old: str, new: str) -> Callable[[str], str]:
    def edit(note: str) -> str:
        assert old in note
        return note.replace(old, new, 1)

    return edit


def flip_signature_bit(note: str) -> str:
    text, line = note.split("\n\n")
    name, encoded = line.rstrip("\n").rsplit(" ", 1)
    blob = bytearray(base64.b64decode(encoded))
    blob[-1] ^= 0x01
    return f"{text}\n\n{name} {base64.b64encode(bytes(blob)).decode()}\n"


def flip_key_hash_bit(note: str) -> str:
    text, line = note.split("\n\n")
    name, encoded = line.rstrip("\n").rsplit(" ", 1)
    blob = bytearray(base64.b64decode(encoded))
    blob[0] ^= 0x01
    return f"{text}\n\n{name} {base64.b64encode(bytes(blob)).decode()}\n"


OTHER_ROOT_TEXT = base64.b64encode(hashlib.sha256(b"another tree").digest()).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(replace_once(f"{ORIGIN}\n", "clinic.example/other\n"), id="origin"),
        pytest.param(replace_once("\n42\n", "\n43\n"), id="size"),
        pytest.param(replace_once("\n42\n", "\n4\n"), id="size-shortened"),
        pytest.param(replace_once(base64.b64encode(ROOT).decode(), OTHER_ROOT_TEXT), id="root"),
        pytest.param(flip_signature_bit, id="signature"),
        pytest.param(flip_key_hash_bit, id="key-hash"),
        pytest.param(replace_once(f"{DASH} {ORIGIN} ", f"{DASH} clinic.example/other "), id="name"),
        pytest.param(replace_once("\n\n", "\n"), id="no-blank-line"),
        pytest.param(replace_once("\n\n", "\n\n\n"), id="two-blank-lines"),
        pytest.param(lambda note: note.rstrip("\n"), id="no-final-newline"),
        pytest.param(lambda note: note.split("\n\n")[0] + "\n\n", id="no-signature-line"),
        pytest.param(lambda note: note.split("\n\n")[0] + "\n", id="body-only"),
        pytest.param(replace_once(DASH, "-"), id="hyphen-for-em-dash"),
        pytest.param(replace_once(f"{DASH} ", f"{DASH}  "), id="two-spaces"),
        # golang.org/x/mod sumdb/note/note_test.go TestOpen refuses this as a malformed note.
        pytest.param(lambda note: note + "Unexpected line.\n", id="junk-line-after-signature"),
        pytest.param(
            lambda note: note.replace("\n\n", "\n\nUnexpected line.\n"), id="junk-line-before"
        ),
        pytest.param(replace_once("=\n\n", "\u00e9\n\n"), id="non-ascii-in-root"),
        pytest.param(lambda note: note[:-6] + "\u00e9" + note[-5:], id="non-ascii-in-signature"),
        pytest.param(lambda note: "\n" + note, id="leading-blank-line"),
        pytest.param(lambda note: note.replace("\n", "\r\n"), id="crlf"),
    ],
)
def test_a_note_changed_after_signing_is_refused(tamper: Callable[[str], str]) -> None:
    note = checkpoint.sign(ORIGIN, 42, ROOT, LEDGER_KEY).note
    assert not refused(note)
    assert refused(tamper(note))


def test_a_checkpoint_of_another_ledger_is_refused_even_when_well_signed() -> None:
    note = checkpoint.sign("clinic.example/other", 42, ROOT, LEDGER_KEY).note
    assert refused(note)
    with pytest.raises(CheckpointInvalid):
        checkpoint.parse(note, ORIGIN, LEDGER_KEY.public_key())
    # Even signed under this ledger's own name, a body naming another origin is not ours.
    assert refused(ledger_signed(c2sp_body("clinic.example/other", 42, ROOT)))


def test_a_note_signed_by_another_key_is_refused() -> None:
    note = checkpoint.sign(ORIGIN, 42, ROOT, OTHER_KEY).note
    assert refused(note)
    assert checkpoint.parse(note, ORIGIN, OTHER_KEY.public_key()).size == 42


# --- Refusals: malformed, yet signed by the ledger key (so only the format can refuse them). ---


@pytest.mark.parametrize(
    "size",
    [
        pytest.param("042", id="leading-zero"),
        pytest.param("00", id="double-zero"),
        pytest.param("", id="empty"),
        pytest.param("-1", id="negative"),
        pytest.param("+42", id="plus-sign"),
        pytest.param(" 42", id="leading-space"),
        pytest.param("42 ", id="trailing-space"),
        pytest.param("4_2", id="underscore"),
        pytest.param("0x2a", id="hex"),
        pytest.param("4.2e1", id="float"),
        pytest.param("\u0664\u0662", id="arabic-indic-digits"),
        pytest.param("\uff14\uff12", id="fullwidth-digits"),
        pytest.param("\u00b2", id="superscript-two"),
    ],
)
def test_a_size_that_is_not_plain_ascii_decimal_without_leading_zeros_is_refused(
    size: str,
) -> None:
    # c2sp.org/tlog-checkpoint: "the ASCII decimal representation of the number of leaves in the
    # tree, with no leading zeroes (unless the tree is empty, in which case the tree size is 0)".
    with pytest.raises(CheckpointInvalid):
        parse(ledger_signed(c2sp_body(ORIGIN, size, ROOT)))


@pytest.mark.parametrize(
    "root_text",
    [
        pytest.param(base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), id="urlsafe-alphabet"),
        pytest.param(base64.b64encode(ROOT).decode().rstrip("="), id="no-padding"),
        pytest.param(base64.b64encode(ROOT).decode() + "=", id="extra-padding"),
        pytest.param(base64.b64encode(ROOT).decode()[:20] + " " + "x", id="space-inside"),
        pytest.param(" " + base64.b64encode(ROOT).decode(), id="leading-space"),
        pytest.param(ROOT.hex(), id="hex"),
        pytest.param(base64.b64encode(ROOT[:31]).decode(), id="31-bytes"),
        pytest.param(base64.b64encode(ROOT + b"\x00").decode(), id="33-bytes"),
        pytest.param("", id="empty"),
        pytest.param(base64.b64encode(ROOT).decode()[:-2] + "\u00e9=", id="non-ascii"),
    ],
)
def test_a_root_that_is_not_32_bytes_of_standard_base64_is_refused(root_text: str) -> None:
    with pytest.raises(CheckpointInvalid):
        parse(ledger_signed(c2sp_body(ORIGIN, 42, root_text)))


def test_a_signature_that_is_not_standard_base64_is_refused() -> None:
    line = signature_line(ORIGIN, LEDGER_KEY, BODY)
    encoded = line.rstrip("\n").rsplit(" ", 1)[1]
    blob = base64.b64decode(encoded)
    for variant in (
        base64.urlsafe_b64encode(blob).decode(),
        encoded.rstrip("="),
        encoded + "==",
        encoded[:10] + "*" + encoded[11:],
    ):
        if variant != encoded:
            assert refused(signed_note(BODY, f"{DASH} {ORIGIN} {variant}\n")), variant


def test_a_body_with_fewer_than_three_lines_is_refused() -> None:
    assert refused(ledger_signed(f"{ORIGIN}\n42\n"))
    assert refused(ledger_signed(f"{ORIGIN}\n"))


def test_a_checkpoint_invalid_is_a_ledger_error_with_a_stable_code() -> None:
    with pytest.raises(CheckpointInvalid) as caught:
        parse("not a note")
    assert caught.value.code == "checkpoint_invalid"
