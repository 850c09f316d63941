"""Errors as RFC 9457 problem details: a type, a title, the status, field paths; no values.

Every error a client can see goes through here. Messages name fields and
reasons only (a value may be PHI), and nothing unexpected leaks: any other
exception becomes a bare 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from itertools import accumulate
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carepath.entrypoints.api.asgi import (
    BodyTooLargeError,
    content_type,
    declared_length,
    is_json,
    read_body,
    replaying,
    route_path,
)
from carepath.errors import CarepathError, Conflict, Forbidden, InvalidInput, NotFound, Problem

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("carepath.api")

_STATUS_BY_ERROR: tuple[tuple[type[CarepathError], int], ...] = (
    (InvalidInput, 422),
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
)


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem details (RFC 9457)",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string"},
                    "parameter": {"type": "string"},
                    "location": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}
_PROBLEM_CONTENT = {"content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}}
# Every operation can answer with these; documented once, for the whole app.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": HTTPStatus(status).phrase, **_PROBLEM_CONTENT}
    for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503)
}


def problem_response(
    status: int,
    *,
    detail: str | None = None,
    errors: Sequence[dict[str, str]] = (),
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": f"urn:carepath:problem:{kind}" if kind else "about:blank",
        "title": phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def carepath_problem(exc: CarepathError) -> JSONResponse:
    """The problem answering a carepath error raised by a route."""
    status = next((s for t, s in _STATUS_BY_ERROR if isinstance(exc, t)), 400)
    if isinstance(exc, InvalidInput):
        return problem_response(
            status,
            detail="the request is not valid",
            errors=field_errors(exc.problems),
            kind=exc.code,
        )
    return problem_response(status, detail=str(exc), kind=exc.code)


def http_problem(exc: HTTPException) -> JSONResponse:
    """The problem answering an HTTP error raised by a route or a dependency."""
    detail = exc.detail if isinstance(exc.detail, str) and exc.status_code < 500 else None
    return problem_response(exc.status_code, detail=detail, headers=exc.headers)


def pointer(path: Iterable[str | int]) -> str:
    """A JSON Pointer (RFC 6901) into the request body, as RFC 9457 suggests."""
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "#/" + "/".join(parts)


def field_errors(
    problems: Sequence[Problem], *, prefix: Sequence[str | int] = ()
) -> list[dict[str, str]]:
    """Service problems (location `field.sub`) as `{pointer, detail}` under `prefix`."""
    found = []
    for problem in problems:
        path = [*prefix, *(p for p in problem.location.split(".") if p)]
        found.append({"pointer": pointer(path), "detail": problem.message})
    return found


def install_problem_handlers(app: FastAPI) -> None:
    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for error in exc.errors():
            where, *path = error.get("loc", ("body",))
            entry = {"detail": str(error.get("msg", "invalid"))}  # pydantic's msg holds no input
            if where == "body":
                entry["pointer"] = pointer(path)
            else:
                entry["parameter"] = ".".join(str(p) for p in [where, *path])
            errors.append(entry)
        return problem_response(
            422, detail="the request is not valid", errors=errors, kind="invalid_input"
        )

    async def carepath_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CarepathError)
        return carepath_problem(exc)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return http_problem(exc)

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(CarepathError, carepath_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_middleware(RefuseHostileRequests)
    app.add_middleware(ContainErrors)


MAX_JSON_DEPTH = 32
MAX_BODY_BYTES = 16 * 2**20  # a batch of 1,000 events is well under 1 MiB
# Contact files: streamed to disk by the import, which checks each line itself.
STREAMED_PATH = "/v1/contacts/import"
STREAMED_TYPES = frozenset({b"text/csv", b"application/x-ndjson", b"application/jsonl"})
# A JSON string, escapes included, in the unrolled form (no backtracking). An
# unterminated string runs to the end of the text: with a required closing
# quote, every later quote would start another scan to the end (quadratic).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_CONSTANTS = re.compile(rb"NaN|Infinity")  # Python's parser takes them, JSON and PostgreSQL do not
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def json_depth(body: bytes) -> int:
    """How deeply a JSON text nests (brackets inside strings do not count)."""
    return _depth(_JSON_STRING.sub(b"", body))


def _depth(outside_strings: bytes) -> int:
    # Everything but brackets dropped by bytes machinery: no Python loop over the text.
    brackets = outside_strings.translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def json_problem(body: bytes) -> str | None:
    """Why a JSON text must be refused before it is parsed, or None.

    Too deep (the parser would exhaust its recursion); NaN or Infinity
    (Python's parser accepts them, JSON and PostgreSQL do not); an unpaired
    surrogate escape (no UTF-8 text can hold it). Malformed JSON is left to
    the parser to report.
    """
    outside = _JSON_STRING.sub(b"", body)
    if _depth(outside) > MAX_JSON_DEPTH:
        return f"JSON may nest at most {MAX_JSON_DEPTH} levels deep"
    if _CONSTANTS.search(outside):
        return "JSON may not hold NaN or Infinity"
    if _SURROGATE_ESCAPE.search(body) and _unpaired_surrogate(body):
        return "JSON text may not hold an unpaired surrogate escape"
    return None


def _unpaired_surrogate(body: bytes) -> bool:
    try:
        json.dumps(json.loads(body), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except ValueError:  # not JSON at all: the route's parser says so
        return False
    return False


class RefuseHostileRequests:
    """Refused before any route reads them: NUL characters, and JSON `json_problem` refuses.

    PostgreSQL text cannot hold a NUL, so it would otherwise fail deep in a
    query; a deep JSON text would exhaust the parser's recursion. Bodies are
    read whole here, up to `MAX_BODY_BYTES` (more is a 413, before any key is
    checked), and handed on unchanged. Contact files (CSV, JSON lines) pass
    through as they stream: the import writes them to disk under its own
    limit and checks every line itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").lower()
        if b"%00" in query or "\x00" in scope.get("path", ""):
            await self._refuse(scope, receive, send)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH") or _is_streamed(scope):
            await self.app(scope, receive, send)
            return
        if declared_length(scope) > MAX_BODY_BYTES:
            await self._too_large(scope, receive, send)
            return
        try:
            body, whole = await read_body(receive, MAX_BODY_BYTES)
        except BodyTooLargeError:
            await self._too_large(scope, receive, send)
            return
        if not whole:
            await self.app(scope, receive, send)  # the client went away: let it end
            return
        if b"\x00" in body or b"\\u0000" in body:
            await self._refuse(scope, receive, send)
            return
        if is_json(scope) and (detail := json_problem(body)) is not None:
            await problem_response(400, detail=detail)(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
        # The connection closes: the server would otherwise read the rest of the
        # upload to keep the connection alive.
        limit = f"a request body is at most {MAX_BODY_BYTES:,} bytes"
        answer = problem_response(413, detail=limit, headers={"Connection": "close"})
        await answer(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        detail = "the request may not contain NUL characters"
        await problem_response(400, detail=detail)(scope, receive, send)


def _is_streamed(scope: Scope) -> bool:
    return route_path(scope) == STREAMED_PATH and content_type(scope) in STREAMED_TYPES


class ContainErrors:
    """Any other exception: a bare 500 problem, logged by class only, never re-raised.

    Starlette re-raises unhandled exceptions after answering, and the server
    then logs them with their messages, which may carry values (PHI).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watching(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watching)
        except Exception as exc:  # noqa: BLE001 - the point: nothing escapes with its message
            log.error("unexpected error in a request: %s", exc.__class__.__name__)
            if not started:
                await problem_response(500)(scope, receive, send)
