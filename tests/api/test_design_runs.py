"""API.md § User run endpoints (/api/design/*)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from designrun.models.types import utcnow
from tests.factories import make_run, make_user, runner_headers, sign_in

RUN_FIELDS = {
    "id",
    "accountId",
    "prompt",
    "config",
    "status",
    "progress",
    "error",
    "createdAt",
    "updatedAt",
    "startedAt",
    "completedAt",
    # API.md Part 2 § Run lifecycle
    "failureReason",
    "lastHeartbeatAt",
    "retryOf",
    "dispatch",
    "eventCount",
    "logComplete",
}


@pytest.fixture
def user(app):
    return make_user(app)


@pytest.fixture
def signed_in(app, client, user):
    sign_in(client, user)
    return client


def test_create_run_is_201_queued_with_defaults(signed_in, user):
    r = signed_in.post("/api/design/runs", json={"prompt": "a portfolio site"})
    assert r.status_code == 201, r.get_json()
    run = r.get_json()["run"]
    assert r.get_json()["ok"] is True
    assert set(run) == RUN_FIELDS
    assert run["status"] == "queued" and run["progress"] == 0
    assert run["config"] == {} and run["error"] is None
    assert run["accountId"] == str(user.account_id)
    assert run["startedAt"] is None and run["completedAt"] is None
    assert run["createdAt"].endswith("Z") and len(run["createdAt"]) == 24
    uuid.UUID(run["id"])


def test_create_run_keeps_config(signed_in):
    config = {"model": "x", "pages": 3, "nested": {"a": [1, 2]}}
    r = signed_in.post("/api/design/runs", json={"prompt": "p", "config": config})
    assert r.get_json()["run"]["config"] == config


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 20_001}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "p", "config": []}, "config"),
        ({"prompt": "p", "config": {"big": "x" * 70_000}}, "config"),
    ],
)
def test_invalid_create_is_400_and_creates_nothing(signed_in, body, field):
    r = signed_in.post("/api/design/runs", json=body)
    assert r.status_code == 400, r.get_json()
    assert field in r.get_json()["error"]
    assert signed_in.get("/api/design/runs").get_json()["runs"] == []


def test_prompt_of_20000_chars_is_accepted(signed_in):
    assert signed_in.post("/api/design/runs", json={"prompt": "x" * 20_000}).status_code == 201


def test_create_without_json_content_type_is_415(signed_in):
    r = signed_in.post("/api/design/runs", data="prompt=x", content_type="text/plain")
    assert r.status_code == 415, r.get_json()
    assert r.get_json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"prompt"', b"null", b"\xff\xfe"])
def test_malformed_or_non_object_json_is_400(signed_in, raw):
    r = signed_in.post("/api/design/runs", data=raw, content_type="application/json")
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/design/runs"),
        ("post", "/api/design/runs"),
        ("get", "/api/design/runs/{id}"),
        ("get", "/api/design/runs/{id}/events"),
        ("get", "/api/design/runs/{id}/artifacts"),
        ("delete", "/api/design/runs/{id}"),
    ],
)
def test_without_session_everything_is_401(app, client, user, method, path):
    run = make_run(app, user)
    r = getattr(client, method)(path.format(id=run.id), json={"prompt": "p"})
    assert r.status_code == 401, r.get_json()
    assert r.get_json()["ok"] is False


def test_another_accounts_run_is_indistinguishable_from_a_missing_one(app, signed_in):
    theirs = make_run(app, make_user(app))
    missing = uuid.uuid4()
    for path in ("", "/events", "/artifacts"):
        a = signed_in.get(f"/api/design/runs/{theirs.id}{path}")
        b = signed_in.get(f"/api/design/runs/{missing}{path}")
        assert a.status_code == b.status_code == 404
        assert a.get_json() == b.get_json()
    assert signed_in.delete(f"/api/design/runs/{theirs.id}").status_code == 404
    assert signed_in.get("/api/design/runs").get_json()["runs"] == []


def test_get_run(app, signed_in, user):
    run = make_run(app, user, status="running", progress=0.5)
    r = signed_in.get(f"/api/design/runs/{run.id}")
    assert r.status_code == 200
    assert r.get_json()["run"]["status"] == "running"
    assert r.get_json()["run"]["progress"] == 0.5
    assert signed_in.get(f"/api/design/runs/{str(run.id).upper()}").status_code == 200
    assert signed_in.get("/api/design/runs/not-a-uuid").status_code == 404


def test_list_is_newest_first_with_keyset_pages(app, signed_in, user):
    base = utcnow() - timedelta(hours=1)
    made = [make_run(app, user, created_at=base + timedelta(seconds=i)) for i in range(7)]
    # two runs created at the same instant are still paged without loss or repeat
    same = [make_run(app, user, created_at=base + timedelta(seconds=3)) for _ in range(2)]
    expected = sorted(made + same, key=lambda r: (r.created_at, r.id), reverse=True)
    seen, cursor = [], None
    while True:
        url = "/api/design/runs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = signed_in.get(url).get_json()
        assert body["ok"] is True and len(body["runs"]) <= 2
        seen += [r["id"] for r in body["runs"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == [str(r.id) for r in expected]


def test_list_default_limit_is_20_and_status_filter(app, signed_in, user):
    for _ in range(21):
        make_run(app, user)
    make_run(app, user, status="completed")
    body = signed_in.get("/api/design/runs").get_json()
    assert len(body["runs"]) == 20 and body["nextCursor"] is not None
    done = signed_in.get("/api/design/runs?status=completed").get_json()
    assert [r["status"] for r in done["runs"]] == ["completed"] and done["nextCursor"] is None


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "status=paused",
        "cursor=%%%",
        "cursor=bm90LWEtY3Vyc29y",
    ],
)
def test_bad_list_parameters_are_400(signed_in, query):
    r = signed_in.get(f"/api/design/runs?{query}")
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["code"] == "invalid_request"


def test_limit_100_is_accepted(signed_in):
    assert signed_in.get("/api/design/runs?limit=100").status_code == 200


def add_events(client, app, run, n):
    batch = {"events": [{"eventType": "log", "message": f"m{i}"} for i in range(n)]}
    r = client.post(
        f"/api/runner/runs/{run.id}/events", json=batch, headers=runner_headers(app, run)
    )
    assert r.status_code == 200, r.get_json()


def test_events_tail_with_after_and_next_cursor(app, signed_in, user):
    run = make_run(app, user, status="running")
    add_events(signed_in, app, run, 5)
    page = signed_in.get(f"/api/design/runs/{run.id}/events?limit=2").get_json()
    assert [e["sequence"] for e in page["events"]] == [1, 2]
    assert page["nextCursor"] == 2
    page = signed_in.get(f"/api/design/runs/{run.id}/events?after=2&limit=3").get_json()
    assert [e["message"] for e in page["events"]] == ["m2", "m3", "m4"]
    assert page["nextCursor"] == 5  # a full page: there may be more
    page = signed_in.get(f"/api/design/runs/{run.id}/events?after=5").get_json()
    assert page["events"] == [] and page["nextCursor"] is None
    add_events(signed_in, app, run, 1)
    page = signed_in.get(f"/api/design/runs/{run.id}/events?after=5").get_json()
    assert [e["sequence"] for e in page["events"]] == [6] and page["nextCursor"] is None


def test_events_default_limit_is_100(app, signed_in, user):
    run = make_run(app, user, status="running")
    add_events(signed_in, app, run, 101)
    page = signed_in.get(f"/api/design/runs/{run.id}/events").get_json()
    assert len(page["events"]) == 100 and page["nextCursor"] == 100


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "after=-1", "after=x", "after=1.5", "after=99999999999999999999"],
)
def test_bad_events_parameters_are_400(app, signed_in, user, query):
    run = make_run(app, user)
    r = signed_in.get(f"/api/design/runs/{run.id}/events?{query}")
    assert r.status_code == 400, r.get_json()


def test_delete_removes_the_run_and_everything_that_refers_to_it(app, signed_in, user):
    run = make_run(app, user, status="completed")
    add_events(signed_in, app, run, 3)
    r = signed_in.delete(f"/api/design/runs/{run.id}")
    assert r.status_code == 200 and r.get_json() == {"ok": True}
    assert signed_in.get(f"/api/design/runs/{run.id}").status_code == 404
    from sqlalchemy import func, select

    from designrun.extensions import db
    from designrun.models import RunEvent

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RunEvent)) == 0
    # its runner now learns the run is gone
    r = signed_in.post(
        f"/api/runner/runs/{run.id}/status",
        json={"progress": 0.5},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 404


def test_delete_of_a_running_run_cancels_then_removes(app, signed_in, user):
    run = make_run(app, user, status="running")
    assert signed_in.delete(f"/api/design/runs/{run.id}").status_code == 200
    assert signed_in.delete(f"/api/design/runs/{run.id}").status_code == 404


def test_runner_updates_are_visible_to_the_user(app, signed_in, user):
    run = make_run(app, user)
    h = runner_headers(app, run)
    signed_in.post(f"/api/runner/runs/{run.id}/status", json={"status": "running"}, headers=h)
    got = signed_in.get(f"/api/design/runs/{run.id}").get_json()["run"]
    assert got["status"] == "running" and got["startedAt"] is not None
    signed_in.post(
        f"/api/runner/runs/{run.id}/status", json={"status": "failed", "error": "oom"}, headers=h
    )
    got = signed_in.get(f"/api/design/runs/{run.id}").get_json()["run"]
    assert got["status"] == "failed" and got["error"] == "oom" and got["progress"] == 1
    assert got["completedAt"] is not None and got["updatedAt"] >= got["createdAt"]


def upload(client, app, run, data: bytes, name: str, content_type: str = "text/html"):
    import io

    r = client.post(
        f"/api/runner/runs/{run.id}/artifacts",
        data={"artifactType": "source", "file": (io.BytesIO(data), name, content_type)},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    return r.get_json()["artifactId"]


def test_download_streams_the_object_as_a_sandboxed_attachment(app, signed_in, user):
    run = make_run(app, user, status="running")
    body = b"<html><script>alert(1)</script></html>" * 1000
    artifact_id = upload(signed_in, app, run, body, "my page.html")
    with signed_in.get(f"/api/design/runs/{run.id}/artifacts/{artifact_id}/content") as r:
        assert r.status_code == 200
        assert r.data == body
        assert r.headers["Content-Type"].startswith("text/html")
        assert r.headers["Content-Length"] == str(len(body))
        assert r.headers["Content-Disposition"] == 'attachment; filename="my_page.html"'
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]


def test_download_of_another_accounts_artifact_is_404(app, client, user):
    run = make_run(app, user, status="running")
    artifact_id = upload(client, app, run, b"secret", "a.txt", "text/plain")
    sign_in(client, make_user(app))
    r = client.get(f"/api/design/runs/{run.id}/artifacts/{artifact_id}/content")
    assert r.status_code == 404, r.get_json()


def test_download_of_an_object_stored_elsewhere_is_404(app, signed_in, user):
    run = make_run(app, user, status="running")
    r = signed_in.post(
        f"/api/runner/runs/{run.id}/artifacts",
        json={"artifactType": "source", "storageKey": "elsewhere/app.zip"},
        headers=runner_headers(app, run),
    )
    artifact_id = r.get_json()["artifactId"]
    r = signed_in.get(f"/api/design/runs/{run.id}/artifacts/{artifact_id}/content")
    assert r.status_code == 404 and r.get_json()["code"] == "external_object"
    missing = signed_in.get(f"/api/design/runs/{run.id}/artifacts/{uuid.uuid4()}/content")
    assert missing.status_code == 404 and missing.get_json()["code"] == "artifact_not_found"
