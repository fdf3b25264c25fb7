"""Issue 6 #1: a runner token reaches only its own run's objects (runs/<runId>/).

Keys elsewhere may be registered as references (listed), but designrun never reads, streams or
overwrites them; ``runs`` is matched in any letter case; ``runs`` and ``runs/<id>`` alone are
refused.
"""

from __future__ import annotations

import io

import pytest

from tests.api.artifacts.support import artifact_rows, assert_invalid, register, upload
from tests.factories import make_run, make_user, sign_in


def test_another_runs_object_outside_runs_is_never_read_or_overwritten(app, client, objects):
    user_a, user_b = make_user(app), make_user(app)
    run_a = make_run(app, user_a, status="running")
    make_run(app, user_b, status="running")
    objects.put("exports/b-report.txt", b"B's secret report")

    r = register(client, app, run_a, {"artifactType": "doc", "storageKey": "exports/b-report.txt"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["sizeBytes"] is None  # a reference: the store is not even looked at
    artifact_id = r.get_json()["artifactId"]

    r = upload(
        client,
        app,
        run_a,
        {
            "artifactType": "doc",
            "storageKey": "exports/b-report.txt",
            "file": (io.BytesIO(b"overwritten"), "x.txt"),
        },
    )
    assert_invalid(r, "storageKey")
    assert objects.get("exports/b-report.txt") == b"B's secret report"

    sign_in(client, user_a)
    listed = client.get(f"/api/design/runs/{run_a.id}/artifacts").get_json()["artifacts"]
    assert [a["storageKey"] for a in listed] == ["exports/b-report.txt"]
    r = client.get(f"/api/design/runs/{run_a.id}/artifacts/{artifact_id}/content")
    assert r.status_code == 404, r.get_json()
    assert r.get_json()["code"] == "external_object"
    assert b"secret" not in r.data


@pytest.mark.parametrize("spelling", ["RUNS", "Runs", "rUNs"])
def test_runs_prefix_of_another_run_in_any_case_is_400(app, client, objects, spelling):
    user = make_user(app)
    run, other = make_run(app, user, status="running"), make_run(app, user, status="running")
    key = f"{spelling}/{other.id}/x.png"
    assert_invalid(
        register(client, app, run, {"artifactType": "f", "storageKey": key}), "storageKey"
    )
    r = upload(
        client, app, run, {"artifactType": "f", "storageKey": key, "file": (io.BytesIO(b"1"), "x")}
    )
    assert_invalid(r, "storageKey")
    assert objects.keys() == set()
    assert artifact_rows(app, run.id) == []


@pytest.mark.parametrize("key", ["runs", "RUNS", "runs/{run}", "Runs/{run}"])
def test_bare_runs_and_run_prefix_keys_are_400(app, client, objects, key):
    run = make_run(app, make_user(app), status="running")
    key = key.replace("{run}", str(run.id))
    assert_invalid(
        register(client, app, run, {"artifactType": "f", "storageKey": key}), "storageKey"
    )
    r = upload(
        client, app, run, {"artifactType": "f", "storageKey": key, "file": (io.BytesIO(b"1"), "x")}
    )
    assert_invalid(r, "storageKey")
    assert objects.keys() == set()
    # ... and a later upload at the default key still works (a file named "runs" used to block it)
    r = upload(client, app, run, {"artifactType": "f", "file": (io.BytesIO(b"2"), "ok.txt")})
    assert r.status_code == 200, r.get_json()


def test_upload_to_a_key_outside_runs_is_400_and_nothing_stored(app, client, objects):
    run = make_run(app, make_user(app), status="running")
    r = upload(
        client,
        app,
        run,
        {
            "artifactType": "f",
            "storageKey": f"exports/{run.id}/a.txt",
            "file": (io.BytesIO(b"1"), "a"),
        },
    )
    assert_invalid(r, "storageKey")
    assert objects.keys() == set()
    assert artifact_rows(app, run.id) == []


def test_upper_case_runs_of_the_own_run_is_owned_and_deleted_with_it(app, client, objects):
    owner = make_user(app)
    run = make_run(app, owner, status="completed")
    key = f"RUNS/{run.id}/shot.png"
    r = upload(
        client, app, run, {"artifactType": "f", "storageKey": key, "file": (io.BytesIO(b"1"), "s")}
    )
    assert r.status_code == 200, r.get_json()
    sign_in(client, owner)
    assert client.delete(f"/api/design/runs/{run.id}").status_code == 200
    assert objects.keys() == set()
