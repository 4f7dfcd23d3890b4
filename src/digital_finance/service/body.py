"""Reading a request body within the limits, before anything of it is trusted.

The size limit holds while the body arrives: a declared `Content-Length` over it is refused
before a byte is read, and a body without one is cut off as soon as it passes the limit, so
a client can never make the service buffer more than `max_bytes`. A gzip body is inflated
as it arrives, with the same limit on what it inflates to: a decompression bomb is stopped
at the limit, not after it filled memory. The caller puts a deadline on the whole read (a
slow client holds a connection, not the service).
"""

from __future__ import annotations

import zlib
from typing import Any

from starlette.types import Receive

from digital_finance.service.problems import ApiError


async def read_body(
    receive: Receive,
    *,
    content_length: str | None,
    gzipped: bool,
    max_bytes: int,
) -> bytes:
    """The body (inflated when `gzipped`), or `ApiError` 413 / 400. The caller's deadline
    (`asyncio.timeout`) bounds the wait for it."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if not gzipped and declared > max_bytes:
            raise ApiError(413, _too_large(max_bytes))
        if gzipped and declared > max_bytes:
            raise ApiError(413, _too_large(max_bytes, "compressed"))
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if gzipped else None
    parts: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        more, size = _took(message, inflater, parts, size, max_bytes)
    if inflater is not None:
        if not inflater.eof:
            raise ApiError(400, "the gzip body is truncated")
        if inflater.unused_data:
            raise ApiError(400, "the gzip body has bytes after its end (one gzip member only)")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _took(
    message: Any, inflater: Any, parts: list[bytes], size: int, max_bytes: int
) -> tuple[bool, int]:
    """Keep one message's bytes; (whether more follow, the size so far)."""
    if message["type"] == "http.disconnect":
        raise ApiError(400, "the client went away before sending the whole body")
    chunk: bytes = message.get("body", b"")
    more = bool(message.get("more_body", False))
    if inflater is not None and chunk:
        chunk = _inflate(inflater, chunk, max_bytes - size, max_bytes)
    size += len(chunk)
    if size > max_bytes:
        raise ApiError(413, _too_large(max_bytes))
    if chunk:
        parts.append(chunk)
    return more, size


def _inflate(inflater: Any, chunk: bytes, room: int, max_bytes: int) -> bytes:
    # max_length: never inflate more than one byte past the room left, whatever the ratio
    try:
        out: bytes = inflater.decompress(chunk, room + 1)
    except zlib.error:
        raise ApiError(400, "the body is not valid gzip") from None
    if len(out) > room or inflater.unconsumed_tail:
        raise ApiError(413, _too_large(max_bytes, "inflated"))
    return out


def _too_large(limit: int, what: str = "") -> str:
    kind = f"{what} " if what else ""
    return (
        f"the {kind}body is over the limit of {limit:,} bytes; send fewer records per "
        "request (or raise [api] max_body_bytes)"
    )
