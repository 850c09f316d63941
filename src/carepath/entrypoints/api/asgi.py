"""Reading a request at the ASGI level, for the middleware that runs before any route."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope


def header(scope: Scope, wanted: bytes) -> bytes:
    """The first value of header `wanted` (a lower-case name), or b""."""
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return b""


def declared_length(scope: Scope) -> int:
    length = header(scope, b"content-length")
    return int(length) if length.isdigit() else 0


def content_type(scope: Scope) -> bytes:
    """The media type, lower-case, without parameters."""
    return header(scope, b"content-type").split(b";")[0].strip().lower()


def is_json(scope: Scope) -> bool:
    kind = content_type(scope)
    return kind == b"application/json" or kind.endswith(b"+json")


def route_path(scope: Scope) -> str:
    """The path the routes match: without the prefix the app is served under (`--root-path`)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    if root and path.startswith(root):
        return path[len(root) :]
    return path


class BodyTooLargeError(Exception):
    """More than the allowed bytes of request body have come."""


async def read_body(receive: Receive, limit: int | None = None) -> tuple[bytes, bool]:
    """The request body and whether it is whole (False: the client went away first).

    Raises `BodyTooLargeError` as soon as more than `limit` bytes have come.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if limit is not None and size > limit:
            raise BodyTooLargeError
        if not message.get("more_body", False):
            return b"".join(chunks), True


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands on `body`, read whole already, and then what `receive` gives."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
