"""Statements: what a person signs, the signing input, and the submission envelope."""

from __future__ import annotations

import functools
import operator
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union, cast, get_args, get_origin

import msgspec

from ledger.canonical import canonical, loads_strict
from ledger.clock import AT_PATTERN, parse_timestamp
from ledger.encoding import b64url
from ledger.errors import Malformed, TooLarge
from ledger.keys import Ed25519PrivateKey, Ed25519PublicKey, verify

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

MAX_SUBMISSION_BYTES = 64 * 1024
SIGNING_PREFIX = b"accord.statement.v1\n"

# Patterns end in \Z, not $: Python's $ also matches before a trailing newline.
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"
Uuid = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN, description="lowercase hyphenated UUID")]
KID_PATTERN = r"^[A-Za-z0-9_-]{43}\Z"
Kid = Annotated[str, msgspec.Meta(pattern=KID_PATTERN, description="key id")]
SIGNATURE_PATTERN = r"^[A-Za-z0-9_-]{86}\Z"
Signature = Annotated[str, msgspec.Meta(pattern=SIGNATURE_PATTERN, description="Ed25519")]
KIND_PATTERN = r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+\Z"
Kind = Annotated[str, msgspec.Meta(pattern=KIND_PATTERN, max_length=64)]
# Required text must say something: at least one character that is not white space (what
# else it may hold is checked on submission only, by `ledger.text`).
TEXT_PATTERN = r"\S"
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
Timestamp = Annotated[str, msgspec.Meta(pattern=AT_PATTERN)]
ORIGIN_PATTERN = r"^[\x21-\x7e]+\Z"
Origin = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=ORIGIN_PATTERN)]
HASH_PATTERN = r"^[0-9a-f]{64}\Z"

# What a value failing each pattern is not, said plainly (a regular expression helps no one).
_MEANINGS = {
    UUID_PATTERN: "is not a lowercase hyphenated UUID",
    KID_PATTERN: "is not a key id (43 base64url characters)",
    SIGNATURE_PATTERN: "is not a signature (86 base64url characters)",
    KIND_PATTERN: "is not a statement kind (lowercase words joined by dots)",
    TEXT_PATTERN: "has no visible character",
    AT_PATTERN: "is not a UTC time (YYYY-MM-DDThh:mm:ss[.fff]Z)",
    ORIGIN_PATTERN: "is not an origin (printable ASCII without spaces)",
    HASH_PATTERN: "is not an entry hash (64 lowercase hexadecimal digits)",
}
_PATTERN_ERROR = re.compile(r"Expected `str` matching regex '(.*)' - at `\$(.*)`\Z", re.DOTALL)


class Statement(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """A signed claim by one person about one stream (docs/formats.md)."""

    ledger: Origin
    id: Uuid
    stream: Uuid
    kind: Kind
    by: Uuid
    kid: Kid
    at: Timestamp
    body: dict[str, Any]
    for_: Uuid | msgspec.UnsetType = msgspec.field(name="for", default=msgspec.UNSET)

    @property
    def on_behalf_of(self) -> str | None:
        """The person the author speaks for, if any."""
        return None if self.for_ is msgspec.UNSET else self.for_


class Header(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """A stored statement's fields, typed but not pattern-checked, its body kept as raw JSON.

    Folding a stream needs only this; `Statement` is the full validation, done on submission
    and by every reader that checks the ledger itself.
    """

    ledger: str
    id: str
    stream: str
    kind: str
    by: str
    kid: str
    at: str
    body: msgspec.Raw
    on_behalf_of: str | None = msgspec.field(name="for", default=None)


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    statement: msgspec.Raw
    sig: Signature


@dataclass(frozen=True, slots=True)
class Submission:
    """A parsed, structurally valid submission: the statement and its exact canonical bytes."""

    statement: Statement
    statement_bytes: bytes
    sig: str

    def signature_valid(self, public: Ed25519PublicKey) -> bool:
        """True when `sig` verifies over the signing input of these exact statement bytes."""
        return verify(public, self.sig, signing_input(self.statement_bytes))


def parse_submission(data: bytes) -> Submission:
    """Parse `{"statement": {...}, "sig": "..."}`, checking size, JSON, types and canonical form."""
    if len(data) > MAX_SUBMISSION_BYTES:
        raise TooLarge(f"a submission may be at most {MAX_SUBMISSION_BYTES} bytes")
    envelope = decode(data, _Envelope, "submission")
    statement_bytes = canonical(loads_strict(memoryview(envelope.statement)))
    return Submission(parse_statement(statement_bytes), statement_bytes, envelope.sig)


def parse_statement(statement_bytes: bytes) -> Statement:
    """Validate canonical statement bytes against the statement structure."""
    statement = decode(statement_bytes, Statement, "statement")
    parse_timestamp(statement.at)
    return statement


def decode(data: bytes, kind: type[T], what: str) -> T:
    """Decode JSON into a msgspec type, any failure becoming `Malformed` naming `what`."""
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise Malformed(_plain(exc, what, what)) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise Malformed(f"{what}: {exc}") from None


def _plain(exc: msgspec.ValidationError, what: str, path: str) -> str:
    """msgspec's message, or for a pattern it names, `path.field: what the value is not`."""
    found = _PATTERN_ERROR.match(str(exc))
    if found is not None:
        for pattern, meaning in _MEANINGS.items():
            if found.group(1) == repr(pattern)[1:-1]:
                return f"{path}{found.group(2)}: {meaning}"
    return f"{what}: {exc}"


def parse_body(statement: Statement, bodies: Mapping[str, type[T]], stream: str) -> T:
    """The statement's body as the Struct its kind names in `bodies`, or `Malformed`."""
    body_type = bodies.get(statement.kind)
    if body_type is None:
        raise Malformed(f"{statement.kind!r} is not a {stream} statement kind")
    try:
        return msgspec.convert(statement.body, body_type)
    except msgspec.ValidationError as exc:
        raise Malformed(_plain(exc, f"{statement.kind} body", "body")) from None


def read_header(statement_bytes: bytes) -> Header:
    """Decode statement bytes as a `Header`, or `Malformed`."""
    return decode(statement_bytes, Header, "statement")


def body_decoders(bodies: Mapping[str, type[S]]) -> dict[str, msgspec.json.Decoder[S]]:
    """For `read_body`: a JSON decoder for each kind's body type, without its constraints.

    Folding reads bodies that were validated against these types before they were stored:
    the decoders check structure and types (every field, no unknown ones, literals, dates)
    but not patterns and lengths again, which would cost more than all the rest of decoding.
    The instances are of subclasses of the given types.
    """
    return {kind: msgspec.json.Decoder(unconstrained(body)) for kind, body in bodies.items()}


@functools.cache
def unconstrained(struct: type[S]) -> type[S]:
    """A subclass of a msgspec Struct whose fields have the same types with no constraints
    (patterns, lengths, bounds), in nested Structs too."""
    fields = [(f.name, _unconstrained(f.type), _default(f)) for f in msgspec.structs.fields(struct)]
    subclass = msgspec.defstruct(struct.__name__, fields, bases=(struct,), module=struct.__module__)
    return cast(type[S], subclass)


def _default(f: msgspec.structs.FieldInfo) -> Any:
    if f.default_factory is not msgspec.NODEFAULT:
        return msgspec.field(default_factory=f.default_factory, name=f.encode_name)
    if f.default is not msgspec.NODEFAULT:
        return msgspec.field(default=f.default, name=f.encode_name)
    return msgspec.field(name=f.encode_name)


def _unconstrained(kind: Any) -> Any:
    if get_origin(kind) is Annotated:
        return _unconstrained(get_args(kind)[0])
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return unconstrained(kind)
    origin, args = get_origin(kind), get_args(kind)
    if origin in (list, dict, tuple, set, frozenset):
        return origin[tuple(_unconstrained(arg) for arg in args)]
    if origin in (Union, types.UnionType):
        return functools.reduce(operator.or_, [_unconstrained(arg) for arg in args])
    return kind  # str, int, bool, dates, None, Any, Literal: nothing to take off


def read_body(header: Header, decoders: Mapping[str, msgspec.json.Decoder[T]], stream: str) -> T:
    """The raw body decoded by its kind's decoder (see `body_decoders`), or `Malformed`."""
    decoder = decoders.get(header.kind)
    if decoder is None:
        raise Malformed(f"{header.kind!r} is not a {stream} statement kind")
    try:
        return decoder.decode(header.body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise Malformed(f"{header.kind} body: {exc}") from None


def signing_input(statement_bytes: bytes) -> bytes:
    """What the author signs: a domain-separation prefix and the canonical statement."""
    return SIGNING_PREFIX + statement_bytes


def sign(statement: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Sign a statement given as a JSON-ready dict; returns the submission envelope."""
    statement_bytes = canonical(statement)
    return {"statement": statement, "sig": b64url(key.sign(signing_input(statement_bytes)))}
