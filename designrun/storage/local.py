"""Objects as files under STORAGE_LOCAL_DIR: an object lives at ``<dir>/<storageKey>``."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from designrun.storage.base import CHUNK_SIZE, StorageKeyError


class LocalStorage:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        """The file for ``key``; refuses anything that would resolve outside the root.

        Keys are validated by storage/keys.py before they get here; this is the second line.
        """
        path = (self.root / key).resolve()
        if path == self.root or self.root not in path.parents:
            raise StorageKeyError("storage key escapes the storage folder")
        return path

    def save_stream(self, key: str, stream: BinaryIO, content_type: str | None) -> int:
        """Copy ``stream`` to the key's file chunk by chunk; readers never see a partial file.

        Raises StorageKeyError, before reading the stream, for a key a folder cannot hold: one
        that escapes it, names a folder or a path below a file (S3 keys are flat; folders are
        not), or has a segment longer than a file name may be.
        """
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a folder", key)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise StorageKeyError("clashes with an object or folder already stored") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise StorageKeyError("has a segment too long for the storage folder") from None
            raise
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK_SIZE):
                    out.write(chunk)
                    size += len(chunk)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        """Open the object's file for reading (FileNotFoundError when missing)."""
        path = self._path(key)
        if path.is_dir():  # a key prefix ("folder"), not an object: as S3 answers
            raise FileNotFoundError(key)
        try:
            return path.open("rb")
        except NotADirectoryError:  # a key below an object ("a.txt/b"): missing, as in S3
            raise FileNotFoundError(key) from None

    def size(self, key: str) -> int | None:
        """The file's size, or None (also for a folder: a key prefix is not an object)."""
        try:
            info = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def delete(self, key: str) -> None:
        """Remove the key's file if it exists (a folder or a key below a file: nothing to do)."""
        try:
            self._path(key).unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass

    def delete_prefix(self, prefix: str) -> int:
        """Remove the folder of a ``runs/<id>/`` prefix and everything in it."""
        folder = self._path(prefix.rstrip("/"))
        if not folder.exists():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count
