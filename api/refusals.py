"""Requests the HTTP parser refuses: answered with a problem and an access line, and never
with a word of what they held.

aiohttp's parser errors quote the offending line (`Authorization: Bearer <secret>\\x7f`), and
aiohttp both logs that error and answers it as the 400's body. The connection handler here
answers such a request itself, with a fixed detail per kind of error, and leaves it to the
access log to record; the runner below serves every connection with that handler.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server

from api.problems import problem

# Set on a request the parser refused: it was never routed, so it has no route to log.
REFUSED = web.RequestKey("refused", bool)


def refusal(exc: HttpProcessingError) -> str:
    """What was wrong with a request the parser refused, in words that quote nothing of it."""
    if isinstance(exc, LineTooLong):
        return "the request line or a header is too long"
    if isinstance(exc, BadHttpMethod | BadStatusLine):
        return "the request line is not an HTTP request line"
    if isinstance(exc, InvalidURLError):
        return "the request target is not a valid URL"
    return "the request's headers could not be parsed"


class Handler(RequestHandler):
    """aiohttp's connection handler, answering what its parser refuses without echoing it."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # Not logged here: the error's text quotes header values; the access line says enough.
        request[REFUSED] = True
        response = problem("malformed", f"the HTTP parser refused the request: {refusal(exc)}")
        response.force_close()  # the parser cannot find where the next request would start
        return response


class _Server(Server):
    """aiohttp's server, serving each connection with `Handler`."""

    def __call__(self) -> RequestHandler:
        return Handler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An application runner whose connections are served by `Handler`."""

    async def _make_server(self) -> Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
