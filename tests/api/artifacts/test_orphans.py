"""The orphan sweep and the deletion outbox (services/orphans.py), on local disk and S3.

Also issue 6 #8 (a killed upload leaves no temporary file for good) and #11 (DELETE of a run
while its upload is being copied: the upload answers 404).
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import select

from designrun.models import StorageDeletion, StorageSweep
from designrun.models.types import utcnow
from designrun.services import orphans
from designrun.storage import get_storage
from designrun.storage.base import StorageUnavailable
from tests.api.artifacts.support import register, upload
from tests.factories import make_run, make_user, sign_in


@pytest.fixture
def later(monkeypatch):
    """Move the sweep's clock past the grace period (objects were written just now)."""

    def move(seconds: float = 2 * 86400) -> None:
        moved = utcnow() + timedelta(seconds=seconds)
        monkeypatch.setattr(orphans, "utcnow", lambda: moved)

    return move


def deletions(app):
    from designrun.extensions import db

    with app.app_context():
        rows = db.session.scalars(select(StorageDeletion)).all()
        return [(r.prefix, r.attempts, r.last_error) for r in rows]


def test_sweep_removes_only_stale_unregistered_objects_under_runs(
    backend, app, client, objects, later
):
    run = make_run(app, make_user(app), status="running")
    kept = upload(client, app, run, {"artifactType": "f", "file": (io.BytesIO(b"1"), "a.txt")})
    registered = f"runs/{run.id}/registered.bin"
    objects.put(registered, b"r")
    register(client, app, run, {"artifactType": "f", "storageKey": registered})
    never_registered = f"runs/{run.id}/upload-url-never-used.bin"
    of_a_deleted_run = "runs/0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b/left.bin"
    outside = ["exports/keep.txt", "runs/not-a-run-id/keep.txt", "RUNSX/keep.txt", "keep"]
    for key in [never_registered, of_a_deleted_run, *outside]:
        objects.put(key, b"o")

    assert orphans.run_once(app) == 0  # nothing is older than the grace period yet
    later()
    assert orphans.run_once(app) == 2
    assert objects.keys() == {kept.get_json()["storageKey"], registered, *outside}
    assert orphans.run_once(app) == 0  # the pass is done: the next one is not due yet


def test_sweep_pages_through_many_objects_and_resumes_from_its_cursor(
    backend, app, objects, later, monkeypatch
):
    monkeypatch.setattr(orphans, "PAGE", 3)
    monkeypatch.setattr(orphans, "PAGES_PER_PASS", 2)
    run_id = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
    keys = {f"runs/{run_id}/{i:02d}" for i in range(10)}
    for key in keys:
        objects.put(key)
    later()
    assert orphans.run_once(app) == 6  # two pages, then the lease is released with a cursor
    assert len(objects.keys()) == 4
    assert orphans.run_once(app) == 4
    assert objects.keys() == set()


def test_sweep_does_nothing_while_another_process_holds_its_lease(backend, app, objects, later):
    from designrun.extensions import db

    objects.put("runs/0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b/x")
    later()
    with app.app_context():
        db.session.add(
            StorageSweep(
                name=orphans.SWEEP,
                claimed_until=utcnow() + timedelta(days=30),
                next_run_at=utcnow(),
            )
        )
        db.session.commit()
    assert orphans.run_once(app) == 0
    assert len(objects.keys()) == 1


def test_failed_deletion_of_a_run_is_recorded_and_retried(
    backend, app, client, objects, later, monkeypatch
):
    owner = make_user(app)
    run = make_run(app, owner, status="completed")
    r = upload(client, app, run, {"artifactType": "f", "file": (io.BytesIO(b"1"), "a.txt")})
    key = r.get_json()["storageKey"]
    with app.app_context():
        storage = get_storage()

    def down(prefix):
        raise StorageUnavailable("object storage unreachable (test)")

    monkeypatch.setattr(storage, "delete_prefix", down)
    sign_in(client, owner)
    assert client.delete(f"/api/design/runs/{run.id}").status_code == 200
    assert objects.keys() == {key}
    assert deletions(app) == [(f"runs/{run.id}/", 1, "object storage unreachable (test)")]

    assert orphans.run_once(app) == 0  # not due yet (backoff), and the store is still down
    monkeypatch.undo()
    later(3600)
    assert orphans.run_once(app) >= 1
    assert objects.keys() == set()
    assert deletions(app) == []


def test_stale_temporary_files_and_multipart_uploads_are_removed(backend, app, objects, later):
    with app.app_context():
        storage = get_storage()
    if backend == "local":
        partial = storage.root / ".partial"
        partial.mkdir(parents=True, exist_ok=True)
        (partial / "upload-killed-worker").write_bytes(b"half")
    else:
        objects.client.create_multipart_upload(Bucket=objects.bucket, Key="runs/x/half.bin")
        objects.client.create_multipart_upload(Bucket=objects.bucket, Key="other/half.bin")
    later()
    assert orphans.run_once(app) == 1
    if backend == "local":
        assert objects.keys() == set()
    else:
        left = objects.client.list_multipart_uploads(Bucket=objects.bucket).get("Uploads", [])
        assert [u["Key"] for u in left] == ["other/half.bin"]


class _DeletesTheRun:
    """A stream that deletes its run (as a user's DELETE would) after the first chunk."""

    def __init__(self, inner, delete):
        self.inner, self.delete, self.reads = inner, delete, 0

    def read(self, size=-1):
        self.reads += 1
        if self.reads == 2:
            self.delete()
        return self.inner.read(size)


def test_delete_of_the_run_during_the_upload_copy_is_404_and_nothing_kept(
    backend, app, client, objects, monkeypatch
):
    """Issue 6 #11: the upload answered 500 when its folder was removed under it."""
    from designrun.services import runs

    owner = make_user(app)
    run = make_run(app, owner, status="running")
    with app.app_context():
        storage = get_storage()
    original = storage.save_stream

    def delete_the_run():
        with app.app_context():  # S3 reads the stream in s3transfer's own thread
            runs.delete_run(owner.account_id, run.id)

    def save_stream(key, stream, content_type, limit=None):
        return original(key, _DeletesTheRun(stream, delete_the_run), content_type, limit)

    monkeypatch.setattr(storage, "save_stream", save_stream)
    # Under the test client's 500 KB spooling threshold (its own temporary file leaks).
    body = io.BytesIO(b"x" * 400_000)
    r = upload(client, app, run, {"artifactType": "f", "file": (body, "big.bin")})
    assert r.status_code == 404, r.get_json()
    assert r.get_json()["code"] == "run_not_found"
    assert objects.keys() == set()
