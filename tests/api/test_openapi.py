"""`/openapi.json` describes exactly the routes the server has, is a valid OpenAPI 3.1 document,
and the live server keeps to it: schemathesis sends generated (and deliberately broken)
requests to a real server holding the worked case, on each store, as each kind of reader, and
every answer must be documented, of the documented content type and schema, and never a 5xx.

The schemathesis run drives `APIOperation.as_strategy` with Hypothesis directly rather than
through `schemathesis.pytest.from_fixture`: the lazy fixture loader of schemathesis 4.32 sets
`Function._nodeid`, which pytest 9.2 no longer has.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31

from api.app import create_app
from api.home import Home
from api.tokens import Scope
from domain.worked_case import CAST
from tests.api.conftest import ORIGIN, Served, serve_in_thread

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    # Not positive_data_acceptance: a statement's schema cannot say that it must be signed by a
    # bound key, so schema-valid submissions are rightly refused with 422.
]
# Generated requests per operation and generation mode, shared among the readers: small enough
# that both stores together add well under a minute to `make test`. Derandomised, with a fixed
# schemathesis seed and no example database, so CI runs exactly what runs locally.
EXAMPLES = 40
SEED = 20261121
_PARAM = re.compile(r"{(\w+)}")


# -- the document and the router ------------------------------------------------------------------


class Live:
    """The document a running server publishes, and the router of the same service's app."""

    def __init__(self, url: str, app: web.Application) -> None:
        self.url = url
        self.app = app
        self.document: dict[str, Any] = _get_json(f"{url}/openapi.json")

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for path, item in self.document["paths"].items():
            for method, operation in item.items():
                if method in METHODS:
                    yield method.upper(), path, operation


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = Home.create(tmp_path_factory.mktemp("openapi") / "home", ORIGIN)
    with serve_in_thread(home) as server:
        yield Live(server.url, create_app(server.service))


def test_openapi_document_declares_openapi_3_1(live: Live) -> None:
    assert re.fullmatch(r"3\.1\.\d+", live.document["openapi"])
    assert live.document["info"]["title"] == "Accord"


def test_openapi_document_validates_against_the_openapi_3_1_schema(live: Live) -> None:
    validator = jsonschema_rs.Draft202012Validator(OPENAPI_31)
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(live.document)]
    assert errors == []


def test_every_schema_in_the_document_is_valid_json_schema_2020_12(live: Live) -> None:
    dialect = "https://json-schema.org/draft/2020-12/schema"
    for name, schema in live.document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid({"$schema": dialect, **schema}), name
    for pattern in _values(live.document, "pattern"):
        re.compile(pattern)  # ECMA-262 patterns that Python reads the same way


def test_every_reference_in_the_document_resolves(live: Live) -> None:
    for ref in _values(live.document, "$ref"):
        target: Any = live.document
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            assert part in target, f"{ref} does not resolve"
            target = target[part]


def test_every_documented_route_is_a_route_of_the_app_and_every_route_is_documented(
    live: Live,
) -> None:
    documented = {(method, path) for method, path, _ in live.operations()}
    served = {(route.method, _template(route)) for route in live.app.router.routes()}
    # aiohttp answers HEAD for a GET route added with `add_get`; OpenAPI leaves HEAD implied.
    served -= {("HEAD", path) for _, path in served if ("GET", path) in served}
    assert documented == served


def test_every_documented_path_resolves_in_the_router_with_real_ids(live: Live) -> None:
    for method, path, _ in live.operations():
        concrete = _PARAM.sub(lambda _: str(uuid.uuid4()), path)
        match = asyncio.run(_resolve(live.app, method, concrete))
        assert match.http_exception is None, f"{method} {concrete}: {match.http_exception}"
        assert _template(match.route) == path


def test_every_documented_route_answers_on_the_live_server_with_a_documented_status(
    live: Live,
) -> None:
    for method, path, operation in live.operations():
        concrete = _PARAM.sub(lambda _: str(uuid.uuid4()), path)
        body = b"{}" if method == "POST" else None
        status = _status(method, f"{live.url}{concrete}", body)
        assert status not in (404, 405), f"{method} {path} is not served: {status}"
        assert str(status) in operation["responses"], f"{method} {path}: undocumented {status}"


# -- the live server against its own document, on each store ------------------------------------


@dataclass
class Fuzzed:
    """The live document, loaded by schemathesis, and a token for each kind of reader."""

    schema: schemathesis.BaseSchema
    readers: dict[str, str | None]


@pytest.fixture
def fuzzed(served: Served) -> Fuzzed:
    played = served.play_worked_case()
    member = served.people[CAST[1].name]  # the lead professional, a member of the case
    readers = {
        "reviewer": served.token(served.reviewer(), Scope.REVIEWER),
        "member": served.token(member, Scope.MEMBER),
        "service": served.token(served.person("Records Service", "service"), Scope.SERVICE),
        "admin": served.token(served.administrator(), Scope.ADMIN),
        "anonymous": None,
    }
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    size = _sealed(served)
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"deterministic": True, "database": "none"},
            # Most generated ids, hashes and sizes are real ones, so requests reach the success
            # paths and their answers' schemas are checked, not only 404s; most statements are
            # for this ledger, at a real time, by a real key: they get as far as the signature.
            "dictionaries": {
                "case": {"values": [played.case]},
                "decision": {"values": [played.decision]},
                "hash": {"values": [receipt.hash for receipt in played.receipts.values()]},
                "size": {"values": list(range(size + 1))},
                "latest": {"values": list(range(size - 5, size + 1))},
                "position": {"values": [-1, 0, 1, size // 2, size - 1]},
                "origin": {"values": [ORIGIN]},
                "at": {"values": [now]},
                "by": {"values": [member.person]},
                "kid": {"values": [member.kid]},
                "kind": {"values": ["opinion.given", "proposal.made", "decision.opened"]},
            },
            "parameters": {
                "path.case": {"dictionary": "case", "probability": 0.7},
                "path.decision": {"dictionary": "decision", "probability": 0.7},
                "query.case": {"dictionary": "case", "probability": 0.5},
                "query.hash": {"dictionary": "hash", "probability": 0.7},
                "query.size": {"dictionary": "latest", "probability": 0.7},
                "query.from": {"dictionary": "size", "probability": 0.7},
                "query.to": {"dictionary": "size", "probability": 0.7},
                "query.after": {"dictionary": "position", "probability": 0.7},
                "query.limit": {"dictionary": "size", "probability": 0.5},
                "body.statement.ledger": {"dictionary": "origin", "probability": 0.8},
                "body.statement.stream": {"dictionary": "case", "probability": 0.8},
                "body.statement.at": {"dictionary": "at", "probability": 0.8},
                "body.statement.by": {"dictionary": "by", "probability": 0.6},
                "body.statement.kid": {"dictionary": "kid", "probability": 0.6},
                "body.statement.kind": {"dictionary": "kind", "probability": 0.8},
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json", config=config)
    return Fuzzed(schema, readers)


def test_live_server_answers_every_generated_request_as_its_openapi_document_says(
    fuzzed: Fuzzed,
) -> None:
    failures: list[str] = []
    operations = []
    for result in fuzzed.schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    documented = {
        f"{method.upper()} {path}"
        for path, item in fuzzed.schema.raw_schema["paths"].items()
        for method in item
    }
    # Loaded from a URL, schemathesis leaves out the operation that served the document.
    assert {operation.label for operation in operations} == documented - {"GET /openapi.json"}
    for operation in operations:
        raw = operation.definition.raw
        modes = [GenerationMode.POSITIVE]
        if "parameters" in raw or "requestBody" in raw:
            modes.append(GenerationMode.NEGATIVE)  # nothing to break in a request without inputs
        readers = fuzzed.readers if "security" in raw else {"anonymous": None}
        if "text/event-stream" in json.dumps(raw["responses"]):
            # A stream its reader may open never ends: each request would last its timeout.
            # What the stream carries is checked by the event tests.
            readers = {name: token for name, token in readers.items() if name != "service"}
        for mode in modes:
            for reader, token in readers.items():
                headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
                problem = _fuzz(operation, mode, headers, EXAMPLES // len(readers))
                if problem is not None:
                    failures.append(f"{operation.label}, {mode.value}, as {reader}: {problem}")
    assert not failures, "\n\n".join(failures)


def _sealed(served: Served) -> int:
    """The ledger's size, once a checkpoint covers every entry (so proofs of them exist)."""
    size = served.record.size()
    deadline = time.monotonic() + 10
    while _get_json(f"{served.url}/v1/ledger")["size"] < size:
        assert time.monotonic() < deadline, "no checkpoint covers the worked case"
        time.sleep(0.05)
    return size


def _fuzz(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    headers: dict[str, str],
    examples: int,
) -> str | None:
    """Send generated requests; None, or the (shrunk) request that broke the document."""
    broken: list[str] = []

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case[Any]) -> None:
        response = case.call(headers=headers, timeout=10)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup):
            broken.append(_exchange(case, response, headers))
            raise

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:
        # Hypothesis replays the shrunk example last: that is the one to report.
        return f"{exc}\n{broken[-1] if broken else ''}"
    return None


def _exchange(case: schemathesis.Case[Any], response: Response, headers: dict[str, str]) -> str:
    body = response.content[:2000].decode("utf-8", "replace")
    content_type = response.headers.get("content-type", ["?"])[0]
    return (
        f"request:  {case.as_curl_command(headers=headers)}\n"
        f"response: {response.status_code} {content_type}\n{body}"
    )


# -- helpers --------------------------------------------------------------------------------------


def _template(route: web.AbstractRoute) -> str:
    assert route.resource is not None
    return route.resource.canonical


async def _resolve(app: web.Application, method: str, path: str) -> web.UrlMappingMatchInfo:
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    assert isinstance(match, web.UrlMappingMatchInfo)
    return match


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        document: dict[str, Any] = json.loads(response.read())
        return document


def _status(method: str, url: str, body: bytes | None) -> int:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _values(document: Any, key: str) -> Iterator[str]:
    """Every string value of `key`, anywhere in the document."""
    if isinstance(document, dict):
        for name, value in document.items():
            if name == key and isinstance(value, str):
                yield value
            else:
                yield from _values(value, key)
    elif isinstance(document, list):
        for item in document:
            yield from _values(item, key)
