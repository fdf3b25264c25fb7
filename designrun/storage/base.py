"""The object-storage interface every backend implements, and its errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

CHUNK_SIZE = 1024 * 1024


def read_chunks(stream: BinaryIO, size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """``stream``'s bytes as full chunks of ``size`` (the last one shorter), until its end.

    A stream with ``readinto`` (files, werkzeug's and api/body.py's request streams) fills
    one reused buffer: each chunk is a view of it, valid until the next one is asked for.
    Others are read with ``read``.
    """
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while data := stream.read(size):
            yield memoryview(data)
        return
    buffer = bytearray(size)
    view = memoryview(buffer)
    while True:
        filled = 0
        while filled < size:
            got = readinto(view[filled:])
            if not got:
                break
            filled += got
        if filled:
            yield view[:filled]
        if filled < size:
            return


class StorageKeyError(ValueError):
    """The backend cannot hold an object at this key; services answer a 400 naming storageKey.

    The local backend raises it, before reading the stream, for a key that escapes its folder,
    clashes with a folder or a file already on disk, or has a segment too long for a file name.
    """


class StorageUnavailable(Exception):
    """The store is down, refuses us, or failed mid-operation: the API answers 503
    ``storage_unavailable`` (api/errors.py). Nothing half-written is left at the key."""


class ObjectTooLarge(Exception):
    """A stream went on past the byte limit it was saved with; nothing was stored (413)."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a download needs to know about a stored object without reading it."""

    size: int
    etag: str  # a strong validator, quoted as in HTTP ("…")
    last_modified: datetime  # timezone-aware UTC


@dataclass(frozen=True)
class ListedObject:
    key: str
    last_modified: datetime  # timezone-aware UTC


class Storage(Protocol):
    def save_stream(
        self, key: str, stream: BinaryIO, content_type: str | None, limit: int | None = None
    ) -> int:
        """Store ``stream`` at ``key`` in chunks (never whole in memory); return its size.

        Readers never see a partial object. Raises ObjectTooLarge (nothing stored) when the
        stream holds more than ``limit`` bytes, StorageKeyError, StorageUnavailable.
        """
        ...

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """Open the object (or ``length`` bytes of it from ``start``) for reading.

        Raises FileNotFoundError when it does not exist.
        """
        ...

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, ETag and modification time of the object, or None when it does not exist."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""
        ...

    def delete(self, key: str) -> None:
        """Delete one object (no error when it does not exist)."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; return how many."""
        ...

    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[ListedObject]:
        """Objects under ``prefix`` in key order, after ``start_after`` (paged, lazily)."""
        ...

    def remove_partials(self, older_than: datetime, prefix: str) -> int:
        """Remove what interrupted uploads left under ``prefix`` (temporary files, incomplete
        S3 multipart uploads) begun before ``older_than``; return how many."""
        ...

    def presign_put(
        self, key: str, content_type: str | None, size: int | None, expires_in: int
    ) -> tuple[str, dict[str, str]] | None:
        """A URL (and the headers to send with it) that PUTs the object, or None when the
        backend has none (the service then offers its own upload URL)."""
        ...

    def presign_get(self, key: str, file_name: str, expires_in: int) -> str | None:
        """A short-lived URL that downloads the object as an attachment, or None."""
        ...
