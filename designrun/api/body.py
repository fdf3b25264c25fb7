"""A large request body read straight from gunicorn's client socket (uploads only).

gunicorn's body reader passes every received piece through two BytesIO buffers and several
slices, and werkzeug's LimitedStream copies it once more: about eight copies of each byte. A
1 GiB upload spent most of its time there (about 200 MiB/s, bench/artifacts.py). For a body of
known length, under gunicorn, ``upload_stream`` instead hands out a reader that takes what
gunicorn has already buffered and then ``recv_into()``s the rest into the caller's buffer: one
copy from the kernel, and the store writes from that buffer.

It leans on gunicorn's reader objects (``wsgi.input`` → ``LengthReader`` → ``SocketUnreader``),
checked by type before use and kept consistent (the unread length and any bytes of a pipelined
next request stay where gunicorn expects them, so keep-alive goes on working). Anything else
(werkzeug's server, the test client, a chunked body, another gunicorn) gets ``request.stream``
unchanged. Limits are unchanged too: ``request.stream`` is still built first, so an oversized
``Content-Length`` is refused (413) before a byte is read, and the store counts what it writes.
"""

from __future__ import annotations

import io
import socket
from typing import Any, BinaryIO, cast

from flask import request
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader


def upload_stream() -> BinaryIO:
    """The request body as a stream for an upload: the socket reader when it applies."""
    stream = cast(BinaryIO, request.stream)  # raises 413 for a Content-Length over the limit
    fast = _socket_reader(request.environ)
    return cast(BinaryIO, fast) if fast is not None else stream


def _socket_reader(environ: dict[str, Any]) -> _SocketBody | None:
    body = environ.get("wsgi.input")
    sock = environ.get("gunicorn.socket")
    if not isinstance(body, Body) or not isinstance(sock, socket.socket):
        return None
    reader = body.reader
    if not isinstance(reader, LengthReader) or body.buf.tell():
        return None  # chunked, or something was already read through gunicorn's buffer
    unreader = reader.unreader
    if not isinstance(unreader, SocketUnreader) or unreader.sock is not sock:
        return None
    return _SocketBody(sock, reader, unreader)


class _SocketBody(io.RawIOBase):
    """What is left of a Content-Length body: gunicorn's buffered bytes, then the socket."""

    def __init__(self, sock: socket.socket, reader: Any, unreader: Any) -> None:
        super().__init__()
        self._sock = sock
        self._reader = reader  # gunicorn's LengthReader: ``length`` is what is left to read
        self._unreader = unreader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._reader.length)
        if want <= 0:
            return 0
        got = self._from_buffer(view[:want])
        if not got:
            got = self._sock.recv_into(view[:want])
            if not got:  # the client went away before the end of its body
                self._reader.length = 0
                return 0
        self._reader.length -= got
        return got

    def _from_buffer(self, view: memoryview) -> int:
        """Bytes gunicorn read ahead with the headers; a next request's bytes stay there."""
        buffered = self._unreader.buf
        if not buffered.tell():
            return 0
        data = buffered.getvalue()
        got = min(len(view), len(data))
        view[:got] = data[:got]
        rest = io.BytesIO()
        rest.write(data[got:])
        self._unreader.buf = rest
        return got

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the body), as a bytearray: the
        multipart decoder copies them into its own buffer anyway."""
        if size is None or size < 0:
            size = self._reader.length
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            got = self.readinto(view[filled:])
            if not got:
                break
            filled += got
        view.release()
        del buffer[filled:]
        return cast(bytes, buffer)
