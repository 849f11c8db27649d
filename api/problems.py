"""RFC 9457 problem responses: the one place where every error becomes an HTTP answer.

Each problem carries a stable machine `code` (the README lists them); a rule violation also
names its `rule`. Details come from our own exception messages, which never hold secrets; anything
unexpected is answered with a bare 500 and logged, never echoed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from domain.errors import RuleViolated
from ledger.errors import LedgerError

CONTENT_TYPE = "application/problem+json"
_log = logging.getLogger(__name__)

# The HTTP status of each stable code; a code not listed here is a 400.
STATUS = {
    "malformed": 400,
    "wrong_ledger": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "statement_conflict": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "signature_invalid": 422,
    "unknown_key": 422,
    "key_revoked": 422,
    "not_a_member": 422,
    "not_permitted": 422,
    "rule_violated": 422,
    "stale_reference": 422,
    "unknown_stream": 422,
    "busy": 503,
    "unavailable": 503,
    "timeout": 408,
    "internal": 500,
}


class Problem(msgspec.Struct, omit_defaults=True):
    """An `application/problem+json` body."""

    type: str
    title: str
    status: int
    code: str
    detail: str = ""
    instance: str = ""
    rule: str | None = None


class ApiError(Exception):
    """An error raised by a handler on purpose: becomes a problem with this code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def problem(code: str, detail: str, instance: str = "", rule: str | None = None) -> web.Response:
    """The response for a problem with a stable `code`."""
    status = STATUS.get(code, 400)
    body = Problem(
        type=f"urn:accord:problem:{code}",
        title=code.replace("_", " ").capitalize(),
        status=status,
        code=code,
        detail=detail,
        instance=instance,
        rule=rule,
    )
    headers = {"Accord-Problem": code}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="accord"'
    response = web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type=CONTENT_TYPE,
        headers=headers,
    )
    if code in _UNREAD_BODY:
        response.force_close()  # the rest of the body is still on the wire: drop the connection
    return response


_UNREAD_BODY = frozenset({"timeout", "too_large"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's own refusals, by status, as our codes.
_HTTP_CODES = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error a handler lets out into a problem response."""
    path = request.path
    try:
        return await handler(request)
    except RuleViolated as exc:
        return problem(exc.code, exc.detail, path, rule=exc.rule)
    except LedgerError as exc:
        return problem(exc.code, exc.detail, path)
    except ApiError as exc:
        return problem(exc.code, exc.detail, path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "malformed")
        detail = exc.text or exc.reason
        if exc.status == 413:
            detail = "the request body is larger than this endpoint accepts"
        return problem(code, detail.removeprefix(f"{exc.status}: "), path)
    except Exception:
        _log.exception("unexpected error serving %s %s", request.method, path)
        return problem("internal", "the server could not answer this request", path)
