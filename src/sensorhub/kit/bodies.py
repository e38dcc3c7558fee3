"""Request bodies of the write routes: read in bounded memory, gzip decompressed in bounded memory."""

from __future__ import annotations

import zlib

from starlette.requests import Request

from sensorhub.errors import PayloadTooLarge, UnsupportedMediaType

_CHUNK = 64 * 1024


def _too_large(limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the {what} is larger than {limit} bytes (SENSORHUB_INGEST_MAX_BODY_BYTES); split it into "
        "several requests"
    )


class _Gunzip:
    """Incremental gzip decompression (several members allowed, as the format does), refusing output
    beyond ``limit`` bytes before producing it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.z = zlib.decompressobj(wbits=31)
        self.out: list[bytes] = []

    def feed(self, data: bytes) -> None:
        while data:
            if self.z.eof:
                data, self.z = self.z.unused_data + data, zlib.decompressobj(wbits=31)
            try:
                out = self.z.decompress(data, _CHUNK)
            except zlib.error as e:
                raise UnsupportedMediaType(f"the gzip body cannot be decompressed: {e}") from None
            self.size += len(out)
            if self.size > self.limit:
                raise _too_large(self.limit, "decompressed body")
            self.out.append(out)
            data = self.z.unconsumed_tail
            if self.z.eof:
                data = self.z.unused_data + data
                if data:
                    self.z = zlib.decompressobj(wbits=31)

    def result(self) -> bytes:
        if not self.z.eof:
            raise UnsupportedMediaType("the gzip body is truncated")
        return b"".join(self.out)


async def read_body(request: Request, limit: int, *, gzip: bool = False) -> bytes:
    """The body, refused (413) as soon as it outgrows ``limit`` bytes. With ``gzip``, a body sent with
    ``Content-Encoding: gzip`` is decompressed as it arrives and its *decompressed* size is bounded by
    ``limit`` too (a small bomb never expands past it); any other encoding is a 415."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "") and not (gzip and encoding == "gzip"):
        raise UnsupportedMediaType(
            f"Content-Encoding '{encoding[:20]}' is not supported here; send "
            + ("gzip or an uncompressed body" if gzip else "an uncompressed body")
        )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit, "body")
    gunzip = _Gunzip(limit) if encoding == "gzip" else None
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit, "body")
        if gunzip is None:
            chunks.append(chunk)
        else:
            gunzip.feed(chunk)
    return b"".join(chunks) if gunzip is None else gunzip.result()
