"""Keys: Ed25519 only, PKCS#8 files of mode 0600, base64url wire form, SHA-256 kids."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st

from ledger import keys
from ledger.encoding import b64url, from_b64url
from ledger.errors import Malformed
from ledger.files import FileRefused
from ledger.keys import Ed25519PrivateKey, Ed25519PublicKey, KeyFileError

B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# RFC 8032 §7.1, test 1: a fixed key, so the kid below is checked against known bytes.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def reference_b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def reference_kid(raw_public: bytes) -> str:
    return reference_b64url(hashlib.sha256(raw_public).digest())


def raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 0, so a file's mode shows what the code asked for, not what umask removed."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# --- files -------------------------------------------------------------------------------------


def test_a_saved_key_loads_back_as_the_same_key(tmp_path: Path) -> None:
    key = keys.generate()
    path = tmp_path / "alice.key"
    keys.save_private_key(key, path)
    loaded = keys.load_private_key(path)
    assert raw_private(loaded) == raw_private(key)
    assert keys.verify(key.public_key(), b64url(loaded.sign(b"hello")), b"hello")


def test_the_private_key_file_is_pkcs8_pem(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    keys.save_private_key(keys.generate(), path)
    text = path.read_text(encoding="ascii")
    assert text.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert text.rstrip().endswith("-----END PRIVATE KEY-----")


@pytest.mark.usefixtures("permissive_umask")
@pytest.mark.parametrize("passphrase", [None, b"correct horse"], ids=["plain", "encrypted"])
def test_the_private_key_file_is_created_with_mode_0600(
    tmp_path: Path, passphrase: bytes | None
) -> None:
    path = tmp_path / "alice.key"
    keys.save_private_key(keys.generate(), path, passphrase)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_saving_writes_the_base64url_public_key_next_to_the_private_key(tmp_path: Path) -> None:
    key = keys.generate()
    path = tmp_path / "alice.key"
    keys.save_private_key(key, path)
    public_text = (tmp_path / "alice.key.pub").read_text(encoding="ascii")
    assert public_text == reference_b64url(keys.raw_public_key(key)) + "\n"
    assert len(public_text.strip()) == 43


def test_saving_never_overwrites_an_existing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    path.write_bytes(b"precious")
    with pytest.raises(FileRefused):
        keys.save_private_key(keys.generate(), path)
    assert path.read_bytes() == b"precious"
    assert not (tmp_path / "alice.key.pub").exists()


def test_saving_twice_to_the_same_path_keeps_the_first_key(tmp_path: Path) -> None:
    first = keys.generate()
    path = tmp_path / "alice.key"
    keys.save_private_key(first, path)
    public_before = (tmp_path / "alice.key.pub").read_bytes()
    with pytest.raises(FileRefused):
        keys.save_private_key(keys.generate(), path)
    assert raw_private(keys.load_private_key(path)) == raw_private(first)
    assert (tmp_path / "alice.key.pub").read_bytes() == public_before


def test_saving_never_overwrites_an_existing_public_key_file(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    (tmp_path / "alice.key.pub").write_text("someone else's key\n", encoding="ascii")
    with contextlib.suppress(FileRefused):  # refusing to save would also be correct
        keys.save_private_key(keys.generate(), path)
    assert (tmp_path / "alice.key.pub").read_text(encoding="ascii") == "someone else's key\n"


def test_an_encrypted_key_file_is_marked_encrypted_and_loads_with_its_passphrase(
    tmp_path: Path,
) -> None:
    key = keys.generate()
    path = tmp_path / "alice.key"
    keys.save_private_key(key, path, b"correct horse")
    assert path.read_text(encoding="ascii").startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = keys.load_private_key(path, b"correct horse")
    assert raw_private(loaded) == raw_private(key)


@pytest.mark.parametrize(
    "passphrase",
    [None, b"", b"wrong horse", b"correct hors"],
    ids=["none", "empty", "wrong", "prefix"],
)
def test_an_encrypted_key_file_is_refused_without_its_passphrase(
    tmp_path: Path, passphrase: bytes | None
) -> None:
    path = tmp_path / "alice.key"
    keys.save_private_key(keys.generate(), path, b"correct horse")
    with pytest.raises(KeyFileError, match="passphrase") as excinfo:
        keys.load_private_key(path, passphrase)
    assert excinfo.value.code == "key_file"
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700, 0o620], ids=oct)
def test_loading_refuses_a_key_file_that_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "alice.key"
    keys.save_private_key(keys.generate(), path)
    path.chmod(mode)
    if mode & 0o077 == 0:
        # Owner-only modes are fine: only group and world bits make a key unsafe.
        keys.load_private_key(path)
        return
    with pytest.raises(KeyFileError, match="readable by others") as excinfo:
        keys.load_private_key(path)
    assert "chmod 600" in str(excinfo.value)


def test_loading_a_missing_key_file_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        keys.load_private_key(tmp_path / "nobody.key")


def _write_secret(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def test_loading_refuses_a_file_that_is_not_a_pem_key(tmp_path: Path) -> None:
    path = _write_secret(tmp_path / "junk.key", b"this is not a key\n")
    with pytest.raises(KeyFileError, match="not a PKCS#8 PEM private key"):
        keys.load_private_key(path)


def test_loading_refuses_a_private_key_of_another_algorithm(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = _write_secret(tmp_path / "p256.key", pem)
    with pytest.raises(KeyFileError, match="Ed25519"):
        keys.load_private_key(path)


# --- key ids and the wire form -----------------------------------------------------------------


def test_the_kid_of_the_rfc8032_test_key_is_the_base64url_sha256_of_its_raw_public_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert keys.raw_public_key(key) == RFC8032_PUBLIC
    assert keys.kid(key) == reference_kid(RFC8032_PUBLIC)
    assert keys.public_key_b64(key) == reference_b64url(RFC8032_PUBLIC)


@pytest.mark.parametrize("_round", range(5))
def test_a_kid_is_43_characters_of_base64url_sha256_of_the_raw_public_key(_round: int) -> None:
    key = keys.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    expected = reference_kid(raw)
    assert len(expected) == 43
    assert keys.kid(key) == expected
    assert keys.kid(key.public_key()) == expected
    assert keys.kid(raw) == expected


def test_different_keys_have_different_kids() -> None:
    assert keys.kid(keys.generate()) != keys.kid(keys.generate())


def test_a_public_key_survives_its_wire_form() -> None:
    key = keys.generate()
    text = keys.public_key_b64(key)
    assert len(text) == 43
    assert "=" not in text
    assert keys.raw_public_key(keys.public_key_from_b64(text)) == keys.raw_public_key(key)


_VALID_PUBLIC = reference_b64url(RFC8032_PUBLIC)


@pytest.mark.parametrize(
    "text",
    [
        _VALID_PUBLIC + "=",
        reference_b64url(RFC8032_PUBLIC[:31]),
        reference_b64url(RFC8032_PUBLIC + b"\x00"),
        reference_b64url(RFC8032_PUBLIC * 2),
        "",
        "+" + _VALID_PUBLIC[1:],
        "/" + _VALID_PUBLIC[1:],
        "!" + _VALID_PUBLIC[1:],
        " " + _VALID_PUBLIC,
        _VALID_PUBLIC + "\n",
        "é" + _VALID_PUBLIC[1:],
        _VALID_PUBLIC[:-1] + B64URL_ALPHABET[B64URL_ALPHABET.index(_VALID_PUBLIC[-1]) + 1],
    ],
    ids=[
        "padded",
        "31-bytes",
        "33-bytes",
        "64-bytes",
        "empty",
        "plus",
        "slash",
        "bang",
        "leading-space",
        "trailing-newline",
        "non-ascii",
        "non-canonical-last-character",
    ],
)
def test_a_malformed_wire_public_key_is_refused(text: str) -> None:
    with pytest.raises(Malformed) as excinfo:
        keys.public_key_from_b64(text)
    assert excinfo.value.code == "malformed"


def test_verify_is_true_only_for_the_right_key_and_message() -> None:
    key = keys.generate()
    signature = b64url(key.sign(b"message"))
    assert keys.verify(key.public_key(), signature, b"message")
    assert not keys.verify(key.public_key(), signature, b"messagE")
    assert not keys.verify(keys.generate().public_key(), signature, b"message")
    assert not keys.verify(key.public_key(), b64url(bytes(64)), b"message")
    assert not keys.verify(key.public_key(), signature + "=", b"message")  # not base64url


# Points of small order, and encodings that are not canonical (y >= p), from libsodium's list.
_P = 2**255 - 19
_WEAK_PUBLIC = {
    "identity": (1).to_bytes(32, "little"),
    "order-4-y-0": bytes(32),
    "order-2-y-minus-1": (_P - 1).to_bytes(32, "little"),
    "order-8-a": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order-8-b": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    "y-equal-to-p": _P.to_bytes(32, "little"),
    "y-equal-to-p-plus-1": (_P + 1).to_bytes(32, "little"),
}
_L = 2**252 + 27742317777372353535851937790883648493  # the prime order of the base point
_BASE_POINT = bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")


def _plus_order_2(raw: bytes) -> bytes:
    """The point plus (0, -1), the point of order 2: (x, y) becomes (-x, -y). The sum is on
    the curve but outside the prime-order group."""
    y = int.from_bytes(raw, "little") & (2**255 - 1)
    sign = raw[31] >> 7
    return ((_P - y) | ((sign ^ 1) << 255)).to_bytes(32, "little")


@pytest.mark.parametrize("raw", _WEAK_PUBLIC.values(), ids=_WEAK_PUBLIC.keys())
def test_a_small_order_or_non_canonical_public_key_is_refused(raw: bytes) -> None:
    with pytest.raises(Malformed) as excinfo:
        keys.public_key_from_b64(b64url(raw))
    assert "small-order or non-canonical" in excinfo.value.detail


def test_a_public_key_with_a_small_order_component_is_refused() -> None:
    raw = keys.raw_public_key(keys.generate())
    with pytest.raises(Malformed):
        keys.public_key_from_b64(b64url(_plus_order_2(raw)))
    assert _plus_order_2(_plus_order_2(raw)) == raw  # the helper only moves the point


def test_a_weak_key_in_a_public_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weak.pub"
    path.write_text(b64url(_WEAK_PUBLIC["identity"]) + "\n", encoding="ascii")
    with pytest.raises(KeyFileError, match="small-order"):
        keys.load_public_key(path)


def test_a_weak_key_in_a_pem_public_key_file_is_refused(tmp_path: Path) -> None:
    identity = Ed25519PublicKey.from_public_bytes(_WEAK_PUBLIC["identity"])
    path = tmp_path / "weak.pem"
    path.write_bytes(
        identity.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match="small-order"):
        keys.load_public_key(path)


def test_a_bound_weak_key_is_read_with_the_reason_nothing_verifies_under_it() -> None:
    key = keys.generate()
    assert keys.bound_public_key(keys.public_key_b64(key))[1] is None
    public, unusable = keys.bound_public_key(b64url(_WEAK_PUBLIC["identity"]))
    assert keys.raw_public_key(public) == _WEAK_PUBLIC["identity"]
    assert unusable is not None and "small-order" in unusable
    with pytest.raises(Malformed):
        keys.bound_public_key(b64url(bytes(31)))


def test_no_signature_verifies_under_the_identity_point() -> None:
    # R the base point and S = 1 satisfy [S]B = R + [k]A for every message when A is the
    # identity: a universal forgery, which OpenSSL's verify lets through.
    identity = Ed25519PublicKey.from_public_bytes(_WEAK_PUBLIC["identity"])
    forged = _BASE_POINT + (1).to_bytes(32, "little")
    for message in (b"", b"anything at all", bytes(300)):
        assert not keys.verify_bytes(identity, forged, message)


def test_cryptography_accepts_the_forgery_under_the_identity_point() -> None:
    # Why signatures are not checked with `cryptography` (the README says so): its OpenSSL
    # verify takes that one signature for every message. Should OpenSSL come to refuse it, this
    # fails, and the README's sentence goes.
    identity = Ed25519PublicKey.from_public_bytes(_WEAK_PUBLIC["identity"])
    forged = _BASE_POINT + (1).to_bytes(32, "little")
    for message in (b"", b"anything at all", bytes(300)):
        identity.verify(forged, message)  # raises InvalidSignature if refused


def test_a_signature_whose_scalar_is_not_reduced_does_not_verify() -> None:
    key = keys.generate()
    signature = key.sign(b"message")
    s = int.from_bytes(signature[32:], "little")
    assert keys.verify_bytes(key.public_key(), signature, b"message")
    assert not keys.verify_bytes(
        key.public_key(), signature[:32] + (s + _L).to_bytes(32, "little"), b"message"
    )


@given(message=st.binary(max_size=600), flip=st.integers(min_value=0), in_signature=st.booleans())
def test_verify_bytes_accepts_every_honest_signature_and_nothing_altered(
    message: bytes, flip: int, in_signature: bool
) -> None:
    """libsodium and `cryptography` agree on what honest signers produce: the signature
    verifies under both, and one flipped bit of the signature or message fails under both."""
    key = keys.generate()
    public, signature = key.public_key(), key.sign(message)
    assert keys.verify_bytes(public, signature, message)
    public.verify(signature, message)  # raises if `cryptography` disagrees
    if in_signature or not message:
        bit = flip % (len(signature) * 8)
        altered = bytearray(signature)
        altered[bit // 8] ^= 1 << (bit % 8)
        assert not keys.verify_bytes(public, bytes(altered), message)
    else:
        bit = flip % (len(message) * 8)
        altered = bytearray(message)
        altered[bit // 8] ^= 1 << (bit % 8)
        assert not keys.verify_bytes(public, signature, bytes(altered))


def test_verify_bytes_refuses_a_signature_of_the_wrong_length() -> None:
    key = keys.generate()
    signature = key.sign(b"message")
    assert not keys.verify_bytes(key.public_key(), signature[:63], b"message")
    assert not keys.verify_bytes(key.public_key(), signature + b"\x00", b"message")


# --- public key files --------------------------------------------------------------------------


def test_load_public_key_reads_the_pub_file_written_beside_a_private_key(tmp_path: Path) -> None:
    key = keys.generate()
    path = tmp_path / "alice.key"
    keys.save_private_key(key, path)
    public = keys.load_public_key(tmp_path / "alice.key.pub")
    assert keys.raw_public_key(public) == keys.raw_public_key(key)


def test_load_public_key_reads_a_pem_subject_public_key_info_file(tmp_path: Path) -> None:
    key = keys.generate()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "alice.pem"
    path.write_bytes(pem)
    assert keys.raw_public_key(keys.load_public_key(path)) == keys.raw_public_key(key)


@pytest.mark.parametrize("passphrase", [None, b"pass"], ids=["plain", "encrypted"])
def test_load_public_key_refuses_a_private_key_file(
    tmp_path: Path, passphrase: bytes | None
) -> None:
    path = tmp_path / "alice.key"
    keys.save_private_key(keys.generate(), path, passphrase)
    with pytest.raises(KeyFileError, match="not a public key"):
        keys.load_public_key(path)


def test_load_public_key_refuses_a_pem_public_key_of_another_algorithm(tmp_path: Path) -> None:
    pem = (
        X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "x25519.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyFileError, match="Ed25519"):
        keys.load_public_key(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not base64url!\n",
        (_VALID_PUBLIC + "=\n").encode(),
        reference_b64url(bytes(31)).encode(),
        "é".encode(),
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
    ids=["empty", "junk", "padded", "short", "non-ascii", "broken-pem"],
)
def test_load_public_key_refuses_files_that_hold_no_public_key(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "key.pub"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as excinfo:
        keys.load_public_key(path)
    assert excinfo.value.code == "key_file"


def test_load_public_key_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        keys.load_public_key(tmp_path / "missing.pub")


# --- base64url ---------------------------------------------------------------------------------


@given(st.binary(max_size=200))
@example(b"")
@example(b"\xfb\xff")  # encodes to characters that differ between base64 and base64url
def test_b64url_round_trips_any_bytes_without_padding(data: bytes) -> None:
    text = b64url(data)
    assert text == reference_b64url(data)
    assert set(text) <= set(B64URL_ALPHABET)
    assert len(text) == -(-len(data) * 4 // 3)
    assert from_b64url(text) == data


@given(st.binary(min_size=1, max_size=100), st.data())
def test_from_b64url_refuses_non_canonical_trailing_bits(data: bytes, draw: st.DataObject) -> None:
    # When len(data) is not a multiple of 3 the last character carries unused low bits; any
    # text with those bits set decodes to the same bytes, so only the zero form is canonical.
    unused_bits = {0: 0, 1: 4, 2: 2}[len(data) % 3]
    if unused_bits == 0:
        return
    text = b64url(data)
    low = draw.draw(st.integers(min_value=1, max_value=2**unused_bits - 1))
    altered = text[:-1] + B64URL_ALPHABET[B64URL_ALPHABET.index(text[-1]) | low]
    with pytest.raises(Malformed):
        from_b64url(altered)


@given(st.binary(max_size=100))
def test_from_b64url_refuses_padded_and_standard_base64(data: bytes) -> None:
    standard = base64.b64encode(data).decode("ascii")
    if standard != b64url(data):  # has padding, "+" or "/"
        with pytest.raises(Malformed):
            from_b64url(standard)


@given(st.text(alphabet=st.sampled_from([*B64URL_ALPHABET, "=", "+", "/", " ", "\n", "é", "."])))
def test_from_b64url_accepts_only_texts_that_are_canonical_encodings(text: str) -> None:
    try:
        decoded = from_b64url(text)
    except Malformed:
        canonical = False
    else:
        canonical = True
        assert b64url(decoded) == text
    # Independent oracle: a canonical text is exactly the encoding of what it decodes to.
    oracle = len(text) % 4 != 1 and set(text) <= set(B64URL_ALPHABET)
    if oracle:
        oracle = reference_b64url(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))) == text
    assert canonical == oracle
