"""storage/local.py: the shared contract on disk, path-escape refusal and bounded memory."""

from __future__ import annotations

import io
import stat
import tracemalloc

import pytest

from designrun.storage.base import StorageKeyError
from designrun.storage.local import LocalStorage
from tests.storage.contract import MiB, PatternStream, StorageContract, stored_digest


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path):
        return LocalStorage(tmp_path / "artifacts")


def test_object_lives_at_dir_slash_key(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.save_stream("runs/r/a b.txt", io.BytesIO(b"data"), "text/plain")
    path = tmp_path / "runs" / "r" / "a b.txt"
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_no_temporary_files_are_left_behind(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.save_stream("x/ok.bin", io.BytesIO(b"ok"), None)
    with pytest.raises(OSError, match="client went away"):
        storage.save_stream("x/broken.bin", PatternStream(2 * MiB, fail_after=MiB), None)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["ok.bin"]


@pytest.mark.parametrize(
    "key",
    [
        "../escape.txt",
        "a/../../escape.txt",
        "/etc/designrun-absolute.txt",
        "",
        ".",
        "a/..",
    ],
)
def test_keys_escaping_or_naming_the_root_are_refused(tmp_path, key):
    root = tmp_path / "store"
    storage = LocalStorage(root)
    with pytest.raises(ValueError, match="escapes"):
        storage.save_stream(key, io.BytesIO(b"evil"), None)
    with pytest.raises(ValueError, match="escapes"):
        storage.delete(key)
    assert not (tmp_path / "escape.txt").exists()


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    root = tmp_path / "store"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    storage = LocalStorage(root)
    with pytest.raises(ValueError, match="escapes"):
        storage.open("link/secret.txt")
    with pytest.raises(ValueError, match="escapes"):
        storage.save_stream("link/new.txt", io.BytesIO(b"x"), None)
    with pytest.raises(ValueError, match="escapes"):
        storage.delete_prefix("link/")
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert not (outside / "new.txt").exists()


@pytest.mark.parametrize("prefix", ["../", "/", "runs/../../"])
def test_delete_prefix_outside_the_root_is_refused(tmp_path, prefix):
    (tmp_path / "sibling.txt").write_bytes(b"keep")
    storage = LocalStorage(tmp_path / "store")
    storage.save_stream("runs/a/x", io.BytesIO(b"x"), None)
    with pytest.raises(ValueError):
        storage.delete_prefix(prefix)
    assert (tmp_path / "sibling.txt").read_bytes() == b"keep"
    assert storage.size("runs/a/x") == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [("x/a", "x/a/b"), ("x/a/b", "x/a"), ("x/a", "x/a/b/c"), ("x/a", "x/" + "n" * 300)],
)
def test_keys_a_folder_cannot_hold_are_refused_before_reading(tmp_path, first, second):
    storage = LocalStorage(tmp_path)
    storage.save_stream(first, io.BytesIO(b"1"), None)
    stream = PatternStream(MiB)
    with pytest.raises(StorageKeyError):
        storage.save_stream(second, stream, None)
    assert stream.position == 0
    assert storage.size(first) == 1
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["a"]


def test_save_stream_holds_only_a_chunk_in_memory(tmp_path):
    """A 64 MiB upload never materialises: traced peak stays far below its size."""
    storage = LocalStorage(tmp_path)
    stream = PatternStream(64 * MiB)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        size = storage.save_stream("runs/big/upload.bin", stream, "application/octet-stream")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 64 * MiB
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB while saving 64 MiB"
    assert stream.largest_read <= 8 * MiB
    assert stored_digest(storage, "runs/big/upload.bin") == (64 * MiB, stream.digest())
