"""The behaviour every storage backend shares (storage/base.py), and stream helpers.

test_local.py and test_s3.py subclass ``StorageContract`` and provide a ``storage`` fixture
(an empty store); pytest collects the inherited tests once per backend.
"""

from __future__ import annotations

import hashlib
import io

import pytest

MiB = 1024 * 1024
# A period that divides no power of two, so parts stored out of order change the digest.
_PERIOD = 251
_PATTERN = bytes(range(_PERIOD)) * (MiB // _PERIOD + 2)


class PatternStream(io.RawIOBase):
    """A read-only stream of ``size`` bytes made on the fly: never materialised as a whole.

    Tracks the largest single read and how far it has been read; ``digest()`` is the SHA-256
    of everything handed out, to compare with what the backend stored.
    """

    def __init__(self, size: int, fail_after: int | None = None) -> None:
        self.size = size
        self.position = 0
        self.largest_read = 0
        self.fail_after = fail_after
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.position >= self.fail_after:
            raise OSError("client went away")
        remaining = self.size - self.position
        n = remaining if n is None or n < 0 else min(n, remaining)
        out = bytearray()
        while len(out) < n:
            offset = (self.position + len(out)) % _PERIOD
            take = min(n - len(out), len(_PATTERN) - offset)
            out += _PATTERN[offset : offset + take]
        data = bytes(out)
        self.position += len(data)
        self.largest_read = max(self.largest_read, len(data))
        self._hash.update(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def digest(self) -> str:
        return self._hash.hexdigest()


def stored_digest(storage, key: str) -> tuple[int, str]:
    """(size, SHA-256) of a stored object, read back in chunks."""
    digest = hashlib.sha256()
    size = 0
    with storage.open(key) as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def read_all(storage, key: str) -> bytes:
    with storage.open(key) as handle:
        return handle.read()


class StorageContract:
    """Tests every backend must pass; subclasses provide the ``storage`` fixture."""

    @pytest.fixture
    def storage(self):
        raise NotImplementedError

    def keys_present(self, storage, keys):
        return {key for key in keys if storage.size(key) is not None}

    def test_save_stream_returns_size_and_stores_the_bytes(self, storage):
        size = storage.save_stream("a/b/hello.txt", io.BytesIO(b"hello world"), "text/plain")
        assert size == 11
        assert storage.size("a/b/hello.txt") == 11
        assert read_all(storage, "a/b/hello.txt") == b"hello world"

    def test_empty_stream_is_a_zero_byte_object(self, storage):
        assert storage.save_stream("empty.bin", io.BytesIO(b""), None) == 0
        assert storage.size("empty.bin") == 0
        assert read_all(storage, "empty.bin") == b""

    def test_multi_chunk_stream_round_trips(self, storage):
        stream = PatternStream(3 * MiB + 12345)
        assert storage.save_stream("runs/x/big.bin", stream, None) == stream.size
        assert stored_digest(storage, "runs/x/big.bin") == (stream.size, stream.digest())

    def test_short_reads_are_not_mistaken_for_the_end(self, storage):
        stream = io.BufferedReader(io.BytesIO(b"abc" * 100_000), buffer_size=7)
        assert storage.save_stream("short-reads", stream, None) == 300_000
        assert storage.size("short-reads") == 300_000

    def test_saving_again_replaces_the_object(self, storage):
        storage.save_stream("k", io.BytesIO(b"first version"), None)
        assert storage.save_stream("k", io.BytesIO(b"v2"), None) == 2
        assert read_all(storage, "k") == b"v2"
        assert storage.size("k") == 2

    def test_non_ascii_and_space_keys_work(self, storage):
        key = "dossier été/mon fichier (1).png"
        storage.save_stream(key, io.BytesIO(b"\x89PNG"), "image/png")
        assert storage.size(key) == 4
        assert read_all(storage, key) == b"\x89PNG"

    def test_missing_object_open_raises_and_size_is_none(self, storage):
        with pytest.raises(FileNotFoundError):
            storage.open("nope/missing.txt")
        assert storage.size("nope/missing.txt") is None

    def test_a_key_prefix_is_not_an_object(self, storage):
        storage.save_stream("folder/inner.txt", io.BytesIO(b"x"), None)
        assert storage.size("folder") is None
        with pytest.raises(FileNotFoundError):
            storage.open("folder")
        storage.delete("folder")
        assert storage.size("folder/inner.txt") == 1

    def test_a_key_below_an_object_is_missing(self, storage):
        storage.save_stream("leaf.txt", io.BytesIO(b"x"), None)
        assert storage.size("leaf.txt/below") is None
        with pytest.raises(FileNotFoundError):
            storage.open("leaf.txt/below")
        storage.delete("leaf.txt/below")
        assert storage.delete_prefix("leaf.txt/") == 0
        assert storage.size("leaf.txt") == 1

    def test_delete_removes_one_object_and_tolerates_missing(self, storage):
        storage.save_stream("d/one", io.BytesIO(b"1"), None)
        storage.save_stream("d/two", io.BytesIO(b"2"), None)
        storage.delete("d/one")
        assert storage.size("d/one") is None
        assert storage.size("d/two") == 1
        storage.delete("d/one")
        storage.delete("never/existed")

    def test_delete_prefix_deletes_only_under_the_prefix(self, storage):
        inside = ["runs/r1/a.txt", "runs/r1/sub/b.txt", "runs/r1/sub/deeper/c.txt"]
        outside = [
            "runs/r10/a.txt",  # shares the characters, not the prefix
            "runs/r2/a.txt",
            "runs/r1.txt",
            "other/runs/r1/a.txt",
            "r1/a.txt",
        ]
        for key in inside + outside:
            storage.save_stream(key, io.BytesIO(key.encode()), None)
        assert storage.delete_prefix("runs/r1/") == len(inside)
        assert self.keys_present(storage, inside) == set()
        assert self.keys_present(storage, outside) == set(outside)
        for key in outside:
            assert read_all(storage, key) == key.encode()

    def test_delete_prefix_without_objects_is_zero(self, storage):
        assert storage.delete_prefix("runs/nothing-here/") == 0
        storage.save_stream("keep/me", io.BytesIO(b"k"), None)
        assert storage.delete_prefix("runs/nothing-here/") == 0
        assert storage.size("keep/me") == 1

    def test_delete_prefix_of_many_objects(self, storage):
        keys = [f"runs/many/{i:04d}" for i in range(30)]
        for key in keys:
            storage.save_stream(key, io.BytesIO(b"."), None)
        assert storage.delete_prefix("runs/many/") == 30
        assert self.keys_present(storage, keys) == set()

    def test_empty_prefix_is_refused_not_everything_deleted(self, storage):
        storage.save_stream("keep/me", io.BytesIO(b"k"), None)
        with pytest.raises(ValueError):
            storage.delete_prefix("")
        assert storage.size("keep/me") == 1

    def test_failed_stream_leaves_no_object(self, storage):
        stream = PatternStream(2 * MiB, fail_after=MiB)
        with pytest.raises(OSError, match="client went away"):
            storage.save_stream("broken/upload.bin", stream, None)
        assert storage.size("broken/upload.bin") is None

    def test_failed_stream_keeps_the_previous_object(self, storage):
        storage.save_stream("keep/upload.bin", io.BytesIO(b"old"), None)
        with pytest.raises(OSError, match="client went away"):
            storage.save_stream("keep/upload.bin", PatternStream(2 * MiB, fail_after=MiB), None)
        assert read_all(storage, "keep/upload.bin") == b"old"

    # --- what direct uploads, downloads and the orphan sweep need (issue 9) ------------------

    def test_stat_gives_size_a_quoted_etag_and_an_aware_time(self, storage):
        storage.save_stream("runs/r/a.bin", io.BytesIO(b"12345"), None)
        info = storage.stat("runs/r/a.bin")
        assert info.size == 5
        assert info.etag.startswith('"') and info.etag.endswith('"')
        assert info.last_modified.tzinfo is not None
        storage.save_stream("runs/r/a.bin", io.BytesIO(b"other"), None)
        assert storage.stat("runs/r/a.bin").etag != info.etag
        assert storage.stat("runs/r/missing") is None

    def test_open_a_byte_range(self, storage):
        storage.save_stream("runs/r/range.bin", io.BytesIO(bytes(range(100))), None)
        with storage.open("runs/r/range.bin", 10, 5) as handle:
            assert handle.read() == bytes(range(10, 15))
        with storage.open("runs/r/range.bin", 95) as handle:
            assert handle.read() == bytes(range(95, 100))

    def test_save_past_the_limit_stores_nothing(self, storage):
        from designrun.storage.base import ObjectTooLarge

        with pytest.raises(ObjectTooLarge):
            storage.save_stream("runs/r/big.bin", PatternStream(MiB + 1), None, limit=MiB)
        assert storage.size("runs/r/big.bin") is None
        assert storage.save_stream("runs/r/ok.bin", PatternStream(MiB), None, limit=MiB) == MiB

    def test_list_objects_in_key_order_after_a_cursor(self, storage):
        keys = ["runs/a/x", "runs/a-b/y", "runs/a/y/z", "runs/b", "other/c"]
        for key in keys:
            storage.save_stream(key, io.BytesIO(b"."), None)
        listed = [item.key for item in storage.list_objects("runs/")]
        assert listed == sorted(k for k in keys if k.startswith("runs/"))
        after = [item.key for item in storage.list_objects("runs/", start_after=listed[1])]
        assert after == listed[2:]
        assert all(item.last_modified.tzinfo for item in storage.list_objects("runs/"))
