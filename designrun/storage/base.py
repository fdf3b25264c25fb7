"""The object-storage interface every backend implements."""

from __future__ import annotations

from typing import BinaryIO, Protocol

CHUNK_SIZE = 1024 * 1024


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
