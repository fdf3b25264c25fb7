"""The object-storage interface every backend implements."""

from __future__ import annotations

from typing import BinaryIO, Protocol

CHUNK_SIZE = 1024 * 1024


class StorageKeyError(ValueError):
    """The backend cannot hold an object at this key; services answer a 400 naming storageKey.

    The local backend raises it, before reading the stream, for a key that escapes its folder,
    clashes with a folder or a file already on disk, or has a segment too long for a file name.
    """


class Storage(Protocol):
    def save_stream(self, key: str, stream: BinaryIO, content_type: str | None) -> int:
        """Store ``stream`` at ``key`` in chunks (never whole in memory); return its size."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the object for reading; raise FileNotFoundError when it does not exist."""
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
