"""GET /api/design/runs/:runId/events/stream in-process (API.md Part 2 § Live tail).

The wire format, resume by Last-Event-ID / ``after``, ``end``, live hand-over through the
process's waiter, the guards (401, 404 for another account's run, 400 for a bad cursor) and
the per-process cap (503 + Retry-After). The same behaviour over real gunicorn processes, with
pings, cross-process delivery and disconnects: test_stream_gunicorn.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from designrun.services import runs
from designrun.services.event_store import NewEvent
from tests.factories import make_run, make_user, sign_in
from tests.streams.sse import Message, parse


def messages(response: Any) -> Iterator[Message]:
    def lines() -> Iterator[str]:
        buffer = ""
        for chunk in response.response:
            buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
            while "\n" in buffer:
                line, buffer = buffer.split("\n", 1)
                yield line

    return parse(lines())


def add_events(app: Any, run_id: Any, *texts: str) -> None:
    with app.app_context():
        runs.append_events(run_id, [NewEvent("log", message=t) for t in texts])


def stream(client: Any, run_id: Any, **kwargs: Any) -> Any:
    return client.get(f"/api/design/runs/{run_id}/events/stream", buffered=False, **kwargs)


def test_finished_run_streams_its_log_then_end_and_closes(app_factory):
    app = app_factory(STREAM_PING_INTERVAL=5.0)
    user = make_user(app)
    run = make_run(app, user, status="completed")
    add_events(app, run.id, "one", "<script>two</script>", "three")
    client = app.test_client()
    sign_in(client, user)
    response = stream(client, run.id)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"].startswith("no-cache")
    got = list(messages(response))
    assert got[0].retry == 2000
    assert got[1].event == "run" and got[1].json()["status"] == "completed"
    events = [m for m in got if m.event == "event"]
    assert [m.id for m in events] == ["1", "2", "3"]
    assert [m.json()["message"] for m in events] == ["one", "<script>two</script>", "three"]
    assert events[0].json()["sequence"] == 1 and events[0].json()["runId"] == str(run.id)
    assert got[-1].event == "end" and got[-1].json() == {"status": "completed"}


def test_resume_by_last_event_id_header_or_after_parameter(app_factory):
    app = app_factory()
    user = make_user(app)
    run = make_run(app, user, status="failed")
    add_events(app, run.id, *(f"line {i}" for i in range(1, 8)))
    client = app.test_client()
    sign_in(client, user)
    by_header = [m.id for m in messages(stream(client, run.id, headers={"Last-Event-ID": "4"}))]
    assert [i for i in by_header if i] == ["5", "6", "7"]
    by_query = [m.id for m in messages(stream(client, run.id, query_string={"after": 6}))]
    assert [i for i in by_query if i] == ["7"]
    # the header wins over the parameter (an EventSource reconnecting keeps its URL)
    both = stream(client, run.id, query_string={"after": 1}, headers={"Last-Event-ID": "6"})
    assert [m.id for m in messages(both) if m.id] == ["7"]


def test_live_events_and_run_changes_reach_an_open_stream_then_end(app_factory):
    app = app_factory(STREAM_PING_INTERVAL=0.2, STREAM_POLL_INTERVAL=0.05)
    user = make_user(app)
    run = make_run(app, user, status="queued")
    add_events(app, run.id, "before")
    client = app.test_client()
    sign_in(client, user)
    response = stream(client, run.id, headers={"Last-Event-ID": "0"})
    received = messages(response)
    assert next(received).retry == 2000
    assert next(received).json()["status"] == "queued"
    assert next(received).json()["message"] == "before"

    def runner() -> None:
        with app.app_context():
            runs.apply_status(run.id, "running", 0.5, None)
        add_events(app, run.id, "during 1", "during 2")

    def finish() -> None:
        with app.app_context():
            runs.apply_status(run.id, "completed", None, None)

    started = finished = False
    seen: list[Message] = []
    for message in received:
        if not started and message.comments == ["ping"]:
            started = True  # the stream is waiting: now the runner reports
            threading.Thread(target=runner).start()
        if message.event:
            seen.append(message)
        if not finished and message.id == "3":
            finished = True
            threading.Thread(target=finish).start()
    kinds = [(m.event, m.json().get("message") or m.json().get("status")) for m in seen]
    assert ("event", "during 1") in kinds and ("event", "during 2") in kinds
    assert kinds[-1] == ("end", "completed")
    runs_seen = [(m.json()["status"], m.json()["progress"]) for m in seen if m.event == "run"]
    # changes are sent as snapshots (two changes between looks may arrive as the latest one)
    assert runs_seen[-1] == ("completed", 1.0), runs_seen
    ids = [m.id for m in seen if m.event == "event"]
    assert ids == ["2", "3"], "each line exactly once, in order"


def test_signed_out_is_401_and_another_accounts_run_is_404(app_factory):
    app = app_factory()
    owner, other = make_user(app), make_user(app)
    run = make_run(app, owner, status="completed")
    client = app.test_client()
    r = stream(client, run.id)
    assert r.status_code == 401 and r.get_json()["code"] == "unauthorized"
    sign_in(client, other)
    r = stream(client, run.id)
    assert r.status_code == 404, r.get_json()
    assert r.get_json()["code"] == "run_not_found"
    assert stream(client, "not-a-uuid").status_code == 404


def test_malformed_cursor_is_400_naming_it(app_factory):
    app = app_factory()
    user = make_user(app)
    run = make_run(app, user, status="completed")
    client = app.test_client()
    sign_in(client, user)
    for headers, query, name in (
        ({"Last-Event-ID": "abc"}, {}, "Last-Event-ID"),
        ({"Last-Event-ID": "-1"}, {}, "Last-Event-ID"),
        ({}, {"after": "x"}, "after"),
        ({}, {"after": "-5"}, "after"),
    ):
        r = stream(client, run.id, headers=headers, query_string=query)
        assert r.status_code == 400, (headers, query)
        assert name in r.get_json()["error"] and r.get_json()["code"] == "invalid_request"


def test_full_process_is_503_with_retry_after_and_a_closed_stream_frees_its_slot(app_factory):
    app = app_factory(STREAM_MAX_PER_PROCESS=1, STREAM_PING_INTERVAL=0.2)
    user = make_user(app)
    run = make_run(app, user, status="running")
    client = app.test_client()
    sign_in(client, user)
    first = stream(client, run.id)
    assert first.status_code == 200
    full = stream(client, run.id)
    assert full.status_code == 503, full.get_json()
    assert full.get_json()["code"] == "streams_full"
    assert int(full.headers["Retry-After"]) >= 1
    first.close()  # what the WSGI server does when the client goes away
    again = stream(client, run.id)
    assert again.status_code == 200
    again.close()
