"""Authors: a person's identity and key, turning intentions into signed submissions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from ledger.clock import format_recorded
from ledger.keys import Ed25519PrivateKey, kid
from ledger.statement import sign


class Author:
    """Someone who signs statements for one ledger with one key."""

    def __init__(self, origin: str, person: str, key: Ed25519PrivateKey) -> None:
        self.origin = origin
        self.person = person
        self.key = key
        self.kid = kid(key)

    def statement(
        self,
        stream: str,
        kind: str,
        body: dict[str, Any],
        *,
        for_: str | None = None,
        statement_id: str | None = None,
        at: str | None = None,
    ) -> dict[str, Any]:
        """The statement as a JSON-ready dict, before signing."""
        statement: dict[str, Any] = {
            "ledger": self.origin,
            "id": statement_id or str(uuid.uuid4()),
            "stream": stream,
            "kind": kind,
            "by": self.person,
            "kid": self.kid,
            "at": at or format_recorded(datetime.now(UTC)),
            "body": body,
        }
        if for_ is not None:
            statement["for"] = for_
        return statement

    def sign(self, statement: dict[str, Any]) -> bytes:
        """The submission envelope's bytes, ready to POST or to pass to `Ledger.submit`."""
        return orjson.dumps(sign(statement, self.key))

    def submission(self, stream: str, kind: str, body: dict[str, Any], **kwargs: Any) -> bytes:
        """Build and sign a statement in one step."""
        return self.sign(self.statement(stream, kind, body, **kwargs))
