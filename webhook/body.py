"""A request body, read within a size limit and a deadline (the webhooks are its only reader).

uvicorn has no limit of its own on either: a client could send a body of any
size, or one byte a second for ever, and the handler awaiting it would wait
with it. Here the body is refused with 413 as soon as it passes the limit (not
after it has all arrived) and with 408 when it has not all arrived in time.
"""

from __future__ import annotations

import asyncio

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

# A 408 ends the connection: a client too slow for one body would only be slow
# for the next one too, and uvicorn would otherwise read (and drop) the rest of it.
CLOSE = {"Connection": "close"}


async def read(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body; HTTPException 413 past `limit` bytes, 408 after `timeout` seconds."""
    refuse_declared_size(request, limit)
    try:
        async with asyncio.timeout(timeout):
            return await _read_up_to(request, limit)
    except TimeoutError:
        raise HTTPException(408, f"request body not received within {timeout:g} s", CLOSE) from None
    except ClientDisconnect:
        # Nobody reads this answer; it only keeps a vanished client from being a 500.
        raise HTTPException(400, "the client closed the connection during the body") from None


def refuse_declared_size(request: Request, limit: int) -> None:
    """413 before reading a byte when Content-Length already says the body is too large."""
    declared = request.headers.get("content-length", "")
    # isascii: str.isdigit() also accepts "²", which int() refuses.
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_large(limit))


async def _read_up_to(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies declare no length: count what arrives
            raise HTTPException(413, too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> str:
    return f"request body over {limit} bytes ([http] max_body)"
