"""The SDK's errors: every problem the server answers becomes one of these, carrying its stable
`code` (and `rule`, for a rule violation), so callers branch on codes, never on text."""

from __future__ import annotations

import msgspec


class AccordError(Exception):
    """A problem answered by the server; `code` is stable and machine-readable."""

    def __init__(self, status: int, code: str, detail: str, rule: str | None = None) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.status = status
        self.code = code
        self.detail = detail
        self.rule = rule


class Unauthorized(AccordError):
    """401: the token is missing, unknown or revoked."""


class Forbidden(AccordError):
    """403: the token is valid but does not allow this."""


class NotFound(AccordError):
    """404: no such case, decision or route."""


class Rejected(AccordError):
    """A statement or request the ledger refused (400, 409, 413, 415, 422): nothing was stored."""


class Unavailable(AccordError):
    """5xx: the server could not answer now; the request may be retried."""


_BY_STATUS: dict[int, type[AccordError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound}


def error_from(status: int, body: bytes) -> AccordError:
    """The error for a problem response."""
    try:
        problem = msgspec.json.decode(body)
        code, detail, rule = problem["code"], problem.get("detail", ""), problem.get("rule")
    except (msgspec.DecodeError, TypeError, KeyError):
        code, detail, rule = "http_error", f"HTTP {status}", None
    if status >= 500:
        return Unavailable(status, code, detail, rule)
    return _BY_STATUS.get(status, Rejected)(status, code, detail, rule)
