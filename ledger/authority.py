"""The authority's directory operations: open the directory, register people and organisations,
bind and revoke keys, appoint and remove reviewers and administrators."""

from __future__ import annotations

import uuid
from typing import Any

from ledger.author import Author
from ledger.errors import NotPermitted
from ledger.keys import Ed25519PrivateKey, Ed25519PublicKey, kid, public_key_b64
from ledger.ledger import Accepted, Ledger


class Authority:
    """Writes directory statements for a ledger, signed with the authority key."""

    def __init__(self, ledger: Ledger, key: Ed25519PrivateKey) -> None:
        if kid(key) != ledger.authority_kid:
            raise NotPermitted("this key is not the ledger's authority key")
        self.ledger = ledger
        self.key = key

    def open(self, name: str) -> str:
        """Open an empty directory: the authority registers itself and binds its key."""
        directory = self.ledger.directory()
        if directory.authority is not None:
            return directory.authority
        person = str(uuid.uuid4())
        self._submit(
            person, "person.registered", {"person": person, "name": name, "kind": "authority"}
        )
        public = self.key.public_key()
        self._submit(
            person,
            "key.bound",
            {"person": person, "kid": kid(public), "public_key": public_key_b64(public)},
        )
        return person

    def register(self, name: str, kind: str, **details: str | None) -> str:
        """Register a person; returns their new id."""
        person = str(uuid.uuid4())
        body = {"person": person, "name": name, "kind": kind}
        body.update({field: value for field, value in details.items() if value is not None})
        self._submit(self._person(), "person.registered", body)
        return person

    def bind(self, person: str, public: Ed25519PublicKey) -> str:
        """Bind a public key to a person; returns its kid."""
        key_id = kid(public)
        body = {"person": person, "kid": key_id, "public_key": public_key_b64(public)}
        self._submit(self._person(), "key.bound", body)
        return key_id

    def revoke(self, key_id: str, reason: str, compromised_since: str | None = None) -> None:
        """Revoke a key, optionally invalidating what it signed from `compromised_since` on."""
        body: dict[str, Any] = {"kid": key_id, "reason": reason}
        if compromised_since is not None:
            body["compromised_since"] = compromised_since
        self._submit(self._person(), "key.revoked", body)

    def register_organisation(self, name: str) -> str:
        """Register an organisation cases may share with; returns its new id."""
        organisation = str(uuid.uuid4())
        body = {"organisation": organisation, "name": name}
        self._submit(self._person(), "organisation.registered", body)
        return organisation

    def appoint(self, role: str, person: str) -> None:
        """Appoint a person as "reviewer" (safeguarding) or "administrator" (of the directory)."""
        self._submit(self._person(), f"{role}.appointed", {"person": person})

    def remove(self, role: str, person: str, reason: str) -> None:
        """End an appointment; the tokens it allowed stop working at once."""
        self._submit(self._person(), f"{role}.removed", {"person": person, "reason": reason})

    def appoint_reviewer(self, person: str) -> None:
        """Appoint a safeguarding reviewer."""
        self.appoint("reviewer", person)

    def remove_reviewer(self, person: str, reason: str) -> None:
        """End a reviewer's appointment; their reviewer tokens stop working at once."""
        self.remove("reviewer", person, reason)

    def appoint_administrator(self, person: str) -> None:
        """Appoint an administrator of the directory."""
        self.appoint("administrator", person)

    def remove_administrator(self, person: str, reason: str) -> None:
        """End an administrator's appointment; their admin tokens stop working at once."""
        self.remove("administrator", person, reason)

    def _person(self) -> str:
        authority = self.ledger.directory().authority
        if authority is None:
            raise NotPermitted("the directory has not been opened; run `accord init`")
        return authority

    def _submit(self, person: str, kind: str, body: dict[str, Any]) -> Accepted:
        author = Author(self.ledger.origin, person, self.key)
        return self.ledger.submit(author.submission(str(self.ledger.directory_id), kind, body))
