"""Objects as files under STORAGE_LOCAL_DIR: an object lives at ``<dir>/<storageKey>``.

An upload is written to a temporary file in ``<dir>/.partial/``, fsynced, then renamed into
place, so a reader never sees a partial object. A worker killed mid-copy leaves its temporary
file there; the orphan sweep (services/orphans.py) removes such files once they are stale.
Keys under ``.partial/`` are never written by the service (it writes only ``runs/<id>/…``).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from designrun.storage.base import (
    ListedObject,
    ObjectInfo,
    ObjectTooLarge,
    StorageKeyError,
    StorageUnavailable,
    read_chunks,
)

PARTIAL_DIR = ".partial"
# Renaming into a folder that a concurrent run deletion is removing can fail; a few tries.
_RENAME_TRIES = 3


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

    def _prepare_folder(self, key: str, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a folder", key)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise StorageKeyError("clashes with an object or folder already stored") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise StorageKeyError("has a segment too long for the storage folder") from None
            raise StorageUnavailable(f"storage folder: {exc.strerror}") from None

    def save_stream(
        self, key: str, stream: BinaryIO, content_type: str | None, limit: int | None = None
    ) -> int:
        """Copy ``stream`` to a temporary file, fsync it and rename it to the key's file.

        Raises StorageKeyError, before reading the stream, for a key a folder cannot hold: one
        that escapes it, names a folder or a path below a file (S3 keys are flat; folders are
        not), or has a segment longer than a file name may be. ObjectTooLarge past ``limit``
        bytes; StorageUnavailable for a disk error (full, read-only, permissions).
        """
        path = self._path(key)
        self._prepare_folder(key, path)
        partial = self.root / PARTIAL_DIR
        try:
            partial.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=partial, prefix="upload-")
        except OSError as exc:
            raise StorageUnavailable(f"storage folder: {exc.strerror}") from None
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in read_chunks(stream):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise ObjectTooLarge(f"more than {limit} bytes")
                    try:
                        out.write(chunk)  # a full chunk goes past the buffer: no copy
                    except OSError as exc:
                        raise StorageUnavailable(f"storage folder: {exc.strerror}") from None
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            self._rename(key, tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def _rename(self, key: str, tmp: str, path: Path) -> None:
        for attempt in range(_RENAME_TRIES):
            try:
                os.replace(tmp, path)
                return
            except FileNotFoundError:
                # The key's folder went away meanwhile (its run was deleted): make it again;
                # the service then finds the run gone and removes the object (404).
                if attempt == _RENAME_TRIES - 1:
                    raise StorageUnavailable("storage folder changed during the upload") from None
                self._prepare_folder(key, path)
            except IsADirectoryError:
                raise StorageKeyError("clashes with an object or folder already stored") from None
            except OSError as exc:
                raise StorageUnavailable(f"storage folder: {exc.strerror}") from None

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """Open the object's file for reading (FileNotFoundError when missing)."""
        path = self._path(key)
        if path.is_dir():  # a key prefix ("folder"), not an object: as S3 answers
            raise FileNotFoundError(key)
        try:
            handle = path.open("rb")
        except NotADirectoryError:  # a key below an object ("a.txt/b"): missing, as in S3
            raise FileNotFoundError(key) from None
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"storage folder: {exc.strerror}") from None
        if start:
            handle.seek(start)
        if length is None:
            return handle
        return cast(BinaryIO, _Limited(handle, length))

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, ETag (size, mtime and inode) and mtime of the file; None if it is no file."""
        try:
            info = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                return None
            raise StorageUnavailable(f"storage folder: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            return None
        # A new object is always a new file (renamed into place): a new inode and mtime.
        etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}-{info.st_ino:x}"'
        modified = datetime.fromtimestamp(info.st_mtime, UTC)
        return ObjectInfo(size=info.st_size, etag=etag, last_modified=modified)

    def size(self, key: str) -> int | None:
        """The file's size, or None (also for a folder: a key prefix is not an object)."""
        info = self.stat(key)
        return None if info is None else info.size

    def delete(self, key: str) -> None:
        """Remove the key's file if it exists (a folder or a key below a file: nothing to do)."""
        try:
            self._path(key).unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            raise StorageUnavailable(f"storage folder: {exc.strerror}") from None

    def delete_prefix(self, prefix: str) -> int:
        """Remove the folder of a ``runs/<id>/`` prefix and everything in it."""
        if not prefix.strip("/"):
            raise ValueError("refusing to delete an empty prefix (the whole storage folder)")
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageUnavailable(f"storage folder: {exc.strerror}") from None
        return count

    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[ListedObject]:
        """Files under ``prefix`` (a ``…/`` folder prefix) in key order, after ``start_after``."""
        top = self.root / prefix.rstrip("/")
        if not top.is_dir():
            return
        for directory, _folders, files in _sorted_walk(top):
            for name in files:
                path = Path(directory) / name
                key = path.relative_to(self.root).as_posix()
                if start_after is not None and key <= start_after:
                    continue
                try:
                    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                except FileNotFoundError:
                    continue
                yield ListedObject(key=key, last_modified=modified)

    def remove_partials(self, older_than: datetime, prefix: str) -> int:
        """Remove temporary upload files not written to since ``older_than`` (any prefix)."""
        partial = self.root / PARTIAL_DIR
        if not partial.is_dir():
            return 0
        removed = 0
        cutoff = older_than.timestamp()
        for path in partial.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def presign_put(
        self, key: str, content_type: str | None, size: int | None, expires_in: int
    ) -> tuple[str, dict[str, str]] | None:
        """None: the service offers its own signed upload URL for the local backend."""
        return None

    def presign_get(self, key: str, file_name: str, expires_in: int) -> str | None:
        """None: the service streams local objects itself."""
        return None


def _sorted_walk(top: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk in key order: a folder's files and sub-folders merged by name.

    A folder sorts as ``name/``, as its keys do in a flat listing (``a-b`` < ``a/x``).
    """
    try:
        entries = sorted(
            os.scandir(top), key=lambda e: e.name + ("/" if e.is_dir(follow_symlinks=False) else "")
        )
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _sorted_walk(Path(entry.path))
        elif entry.is_file(follow_symlinks=False):
            yield str(top), [], [entry.name]


class _Limited:
    """A read-only view of ``length`` bytes of an open file, from its current position."""

    def __init__(self, handle: BinaryIO, length: int) -> None:
        self._handle = handle
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._handle.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _Limited:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
