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
from typing import Any, BinaryIO, TypeVar, cast

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    State,
)

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
        self.marker = b"--" + boundary  # what every delimiter line holds (after a line break)

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

    # A file part's bytes are scanned here rather than by the decoder (``_PartReader``): the
    # decoder copies each byte four or five times (slices of its buffer), which made a 1 GiB
    # multipart upload CPU-bound. These three reach into werkzeug's MultipartDecoder (pinned in
    # requirements.lock): its state and its buffer; tests/api/artifacts/test_streaming.py
    # covers forms cut at every offset around a delimiter.

    def in_file_data(self) -> bool:
        """Whether the decoder is inside a part's data, past its first piece."""
        return bool(self._decoder.state == State.DATA and not self._ended)

    def take_buffered(self) -> bytearray:
        """What the decoder has received but not decoded yet (it keeps nothing)."""
        data = bytearray(self._decoder.buffer)
        del self._decoder.buffer[:]
        return data

    def give_back(self, data: bytes | bytearray | memoryview) -> None:
        """Put bytes back in front of the decoder, which then carries on from them."""
        self._decoder.buffer[:0] = data

    def read_raw(self, size: int) -> bytes:
        """Read the body on, past the decoder."""
        chunk = self._stream.read(size)
        if not chunk:
            self._ended = True
            self._decoder.receive_data(None)
        return chunk


# Bytes after a possible delimiter that settle whether it is one (the decoder allows blanks
# between "--boundary" and its line break; past this many, it is data anyway).
_DECIDE = 256


def _decidable(after: bytes | bytearray) -> bool:
    """Whether the decoder can tell from ``after`` if the ``--boundary`` before it ends a part:
    the form's last delimiter ("--" follows), a line break, or too long a line for one."""
    return after.startswith(b"--") or b"\n" in after or len(after) >= _DECIDE


class _PartReader:
    """The current file part's bytes, read from the request as the store asks for them.

    After the decoder's first piece the reader scans the body itself (``_scan``): it reads
    from the request, passes on everything that cannot hold the next delimiter, and at the
    first ``--boundary`` hands the rest back to the decoder, which decides whether it is the
    delimiter (then the part ends) or just data (then the decoder goes on, as it always did).

    ``readinto`` copies the pieces straight into the caller's buffer (the local store fills
    one reused buffer, storage/base.py ``read_chunks``); ``read(n)`` gives ``n`` bytes until
    the part ends, as a file does (boto3's upload of a non-seekable stream keeps every short
    read as a part of its own).
    """

    def __init__(self, parser: _Parser) -> None:
        self._parser = parser
        self._pending = memoryview(b"")  # bytes of the part not yet given to the caller
        self._scanning = False  # True while the body is read and scanned here
        self._carry = bytearray()  # scanned bytes that could begin a delimiter
        self.ended = False

    def _fill(self) -> bool:
        """Make ``_pending`` hold the next bytes of the part; False at its end."""
        while not self._pending:
            if self.ended:
                return False
            if self._scanning:
                self._scan()
                continue
            event = self._parser.next_event()
            if not isinstance(event, Data):
                raise InvalidRequestError("body: malformed multipart form (file part)")
            if not event.more_data:
                self.ended = True
            elif self._parser.in_file_data():
                self._scanning = True
                self._carry = self._parser.take_buffered()
            self._pending = memoryview(event.data)
        return True

    def _scan(self) -> None:
        """Read on: the safe part into ``_pending``; at a possible delimiter, back to the
        decoder. A delimiter is a line break, then ``--boundary``: the last ``len(marker) + 1``
        bytes are kept back until the next read shows whether they begin one."""
        marker = self._parser.marker
        buffer = self._carry  # a fresh bytearray: nothing views it yet
        chunk = self._parser.read_raw(_READ)
        buffer += chunk
        found = buffer.find(marker)
        if found < 0 and chunk:
            keep = min(len(buffer), len(marker) + 1)
            self._pending = memoryview(buffer)[: len(buffer) - keep]
            self._carry = bytearray(buffer[len(buffer) - keep :])
            return
        # A possible delimiter, or the end of the body: the decoder goes on from the line
        # break before it (or from the end), and judges what it sees as it always did.
        start = len(buffer) if found < 0 else found
        if start and buffer[start - 1] == 0x0A:  # \n
            start -= 1
        if start and buffer[start - 1] == 0x0D:  # \r
            start -= 1
        if chunk and not _decidable(buffer[found + len(marker) : found + len(marker) + _DECIDE]):
            # Not yet: given "\r\n--boundary" with its end still unread, the decoder passes
            # the "\r" on as data (it allows a bare "\n" before a delimiter). Read on first.
            self._pending = memoryview(buffer)[:start]
            self._carry = bytearray(buffer[start:])
            return
        self._parser.give_back(memoryview(buffer)[start:])
        self._pending = memoryview(buffer)[:start]
        self._carry = bytearray()
        self._scanning = False

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._fill():
            n = min(len(view) - filled, len(self._pending))
            view[filled : filled + n] = self._pending[:n]
            self._pending = self._pending[n:]
            filled += n
        return filled

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            pieces = []
            while self._fill():
                pieces.append(bytes(self._pending))
                self._pending = memoryview(b"")
            return b"".join(pieces)
        buffer = bytearray(size)
        del buffer[self.readinto(buffer) :]
        return bytes(buffer)

    def drain(self) -> None:
        while self._fill():
            self._pending = memoryview(b"")


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
