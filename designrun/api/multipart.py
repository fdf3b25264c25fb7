"""A multipart/form-data upload parsed as it arrives, its file part streamed to the store.

Werkzeug's form parser copies every file part to a temporary file before the view runs, so a
1 GiB upload was written twice (``/tmp``, then the store) and its first byte reached the store
only once the last had arrived. Here the body is decoded incrementally (werkzeug's sans-IO
``MultipartDecoder``): the fields before the ``file`` part are collected, and the file part is
handed to the caller as a stream that reads straight from the request, so the store receives it
while it arrives (in S3 parts for large files).

The fields must then come before the file, as ``designrun.runner``, ``curl -F`` (in the order
given) and browsers' ``FormData`` (insertion order) send them. A form whose ``file`` part comes
before ``artifactType`` is still accepted: its file is spooled to a temporary file first, as
before. Fields after a streamed file part are ignored (docs/api-decisions.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar, cast

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from designrun.api.body import upload_stream
from designrun.errors import InvalidRequestError

T = TypeVar("T")
_READ = 1024 * 1024  # bytes per read of the body (fewer, larger turns of the decoder)
_SPOOL_IN_MEMORY = 512 * 1024
MAX_PARTS = 100


@dataclass
class FilePart:
    """The ``file`` part: its declared name and type, and a stream of its bytes."""

    filename: str | None
    mimetype: str | None
    stream: BinaryIO


class _Parser:
    def __init__(self, stream: BinaryIO, boundary: bytes, max_field: int) -> None:
        self._stream = stream
        self._decoder = MultipartDecoder(boundary, max_field, max_parts=MAX_PARTS)
        self._max_field = max_field
        self._ended = False

    def next_event(self) -> object:
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError as exc:
                raise InvalidRequestError(f"body: malformed multipart form ({exc})") from None
            if not isinstance(event, NeedData):
                return event
            if self._ended:
                raise InvalidRequestError("body: the multipart form ends too early")
            # The decoder refuses (413) a buffer over max_field: read no more than fits in it.
            room = self._max_field - len(self._decoder.buffer)
            chunk = self._stream.read(min(_READ, max(1, room)))
            if not chunk:
                self._ended = True
                self._decoder.receive_data(None)
            else:
                self._decoder.receive_data(chunk)


class _PartReader:
    """The current file part's bytes, read from the request as the store asks for them."""

    def __init__(self, parser: _Parser) -> None:
        self._parser = parser
        self._buffer = bytearray()
        self.ended = False

    def read(self, size: int | None = -1) -> bytes:
        want = -1 if size is None else size
        while not self.ended and (want < 0 or len(self._buffer) < want):
            event = self._parser.next_event()
            if not isinstance(event, Data):
                raise InvalidRequestError("body: malformed multipart form (file part)")
            self._buffer += event.data
            if not event.more_data:
                self.ended = True
        if want < 0 or want >= len(self._buffer):
            out = bytes(self._buffer)
            self._buffer.clear()
        else:
            out = bytes(self._buffer[:want])
            del self._buffer[:want]
        return out

    def drain(self) -> None:
        while not self.ended:
            self._buffer.clear()
            self.read(_READ)
        self._buffer.clear()


def _field_text(raw: bytearray, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{name}: must be UTF-8 text") from None


def stream_form(
    handle: Callable[[dict[str, str], FilePart], T], needs_before_file: str = "artifactType"
) -> T:
    """Parse the request's multipart form and call ``handle(fields, file_part)`` once.

    ``handle`` runs when the ``file`` part begins (its stream reads from the request), or at the
    end of the body when ``needs_before_file`` had not arrived before the file (spooled file).
    Raises InvalidRequestError (no boundary, malformed, no ``file`` part), 413 for a field over
    MAX_FORM_MEMORY_SIZE or a body over MAX_UPLOAD_BYTES.
    """
    _, options = parse_options_header(request.headers.get("Content-Type", ""))
    boundary = options.get("boundary")
    if not boundary:
        raise InvalidRequestError("body: multipart/form-data without a boundary")
    max_field = int(current_app.config.get("MAX_FORM_MEMORY_SIZE") or 1024 * 1024)
    try:
        parser = _Parser(upload_stream(), boundary.encode("latin-1"), max_field)
    except UnicodeEncodeError:
        raise InvalidRequestError("body: malformed multipart boundary") from None
    fields: dict[str, str] = {}
    spooled: FilePart | None = None
    result: list[T] = []
    current: tuple[str, bytearray] | None = None
    try:
        while True:
            event = parser.next_event()
            if isinstance(event, Epilogue):
                break
            if isinstance(event, Field):
                current = (event.name, bytearray())
            elif isinstance(event, File):
                current = None
                part_type = event.headers.get("Content-Type")
                mimetype = parse_options_header(part_type)[0] if part_type else None
                reader = _PartReader(parser)
                if event.name != "file" or result or spooled is not None:
                    reader.drain()  # another file part: ignored, like werkzeug's .get("file")
                elif needs_before_file in fields:
                    part = FilePart(event.filename or None, mimetype, cast(BinaryIO, reader))
                    result.append(handle(dict(fields), part))
                    reader.drain()
                else:
                    spooled = FilePart(event.filename or None, mimetype, _spool(reader))
            elif isinstance(event, Data) and current is not None:
                current[1].extend(event.data)
                if not event.more_data:
                    fields.setdefault(current[0], _field_text(current[1], current[0]))
                    current = None
    except RequestEntityTooLarge:
        raise
    if result:
        return result[0]
    if spooled is None:
        raise InvalidRequestError("file: a 'file' part is required")
    with spooled.stream:
        return handle(fields, spooled)


def _spool(reader: _PartReader) -> BinaryIO:
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
    while chunk := reader.read(_READ):
        spool.write(chunk)
    spool.seek(0)
    return cast(BinaryIO, spool)
