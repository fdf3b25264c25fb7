"""The pages in-process: guards, forms, escaping, CSRF/Origin, previews (issue 8 § Bad input).

The same journey in a real browser: test_browser.py.
"""

from __future__ import annotations

import re
from typing import Any

from designrun.services import runs
from designrun.services.event_store import NewEvent
from designrun.web.preview import preview_token
from tests.factories import PASSWORD, make_run, make_user, runner_headers, sign_in


def csrf(client: Any, path: str = "/runs/new") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert match, page
    return match.group(1)


def upload(app: Any, run: Any, name: str, body: bytes, content_type: str) -> str:
    r = app.test_client().post(
        f"/api/runner/runs/{run.id}/artifacts",
        data={
            "artifactType": "site",
            "contentType": content_type,
            "metadata": f'{{"path": "{name}"}}',
            "file": (__import__("io").BytesIO(body), name),
        },
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    return str(r.get_json()["artifactId"])


def test_signed_out_visitor_is_sent_to_sign_in_and_back(app, client):
    user = make_user(app)
    run = make_run(app, user)
    r = client.get(f"/runs/{run.id}")
    assert r.status_code == 302
    assert r.location == f"/sign-in?next=/runs/{run.id}"
    r = client.post(
        "/sign-in", data={"email": user.email, "password": PASSWORD, "next": f"/runs/{run.id}"}
    )
    assert r.status_code == 303 and r.location == f"/runs/{run.id}"
    assert "better-auth.session_token=" in r.headers["Set-Cookie"]
    assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Lax" in r.headers["Set-Cookie"]
    assert client.get(f"/runs/{run.id}").status_code == 200


def test_sign_in_never_redirects_to_another_site(app, client):
    user = make_user(app)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        r = client.post(
            "/sign-in", data={"email": user.email, "password": PASSWORD, "next": target}
        )
        assert r.status_code == 303 and r.location == "/runs", target
        client.delete_cookie("better-auth.session_token")


def test_wrong_password_keeps_the_email_and_says_why(app, client):
    user = make_user(app)
    r = client.post("/sign-in", data={"email": user.email, "password": "nope-nope"})
    assert r.status_code == 401
    page = r.get_data(as_text=True)
    assert "do not match an account" in page and f'value="{user.email}"' in page


def test_sign_up_errors_keep_the_input_escaped(app, client):
    r = client.post("/sign-up", data={"email": "x@y.z", "password": "short", "name": "<i>Ada</i>"})
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert "at least 8 characters" in page
    assert 'value="&lt;i&gt;Ada&lt;/i&gt;"' in page and 'value="x@y.z"' in page


def test_another_accounts_run_is_a_404_page(app, client):
    owner, other = make_user(app), make_user(app)
    run = make_run(app, owner)
    sign_in(client, other)
    for path in (f"/runs/{run.id}", f"/runs/{run.id}/artifacts", "/runs/not-a-uuid"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.mimetype == "text/html" and "Not found" in r.get_data(as_text=True)


def test_run_page_escapes_prompt_and_log_and_renders_the_newest_lines(app, client, monkeypatch):
    from designrun.web import run_pages

    monkeypatch.setattr(run_pages, "LOG_LINES", 3)
    user = make_user(app)
    run = make_run(app, user, status="running", prompt="<script>alert(1)</script>")
    with app.app_context():
        runs.append_events(run.id, [NewEvent("log", message=f"<b>line {i}</b>") for i in range(5)])
    sign_in(client, user)
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    assert "<b>line" not in page
    assert [int(s) for s in re.findall(r'<li data-seq="(\d+)"', page)] == [3, 4, 5]
    assert 'data-last-seq="5"' in page and 'data-first-seq="3"' in page
    assert re.search(r"<button[^>]*data-earlier[^>]*>", page).group(0).find("hidden") == -1


def test_runs_list_filters_and_loads_more_by_keyset(app, client, monkeypatch):
    from designrun.web import run_pages

    monkeypatch.setattr(run_pages, "PAGE_SIZE", 2)
    user = make_user(app)
    for status in ("completed", "failed", "completed", "running", "completed"):
        make_run(app, user, status=status)
    sign_in(client, user)
    page = client.get("/runs?status=completed").get_data(as_text=True)
    assert page.count('class="run-row"') == 2 and "status-failed" not in page
    more = re.search(r'href="([^"]+)" data-load-more', page).group(1).replace("&amp;", "&")
    rest = client.get(more + "&partial=1").get_data(as_text=True)
    assert rest.count('class="run-row"') == 1 and "data-load-more" not in rest
    assert "<html" not in rest


def test_new_run_validates_config_and_keeps_input(app, client):
    user = make_user(app)
    sign_in(client, user)
    token = csrf(client)
    r = client.post(
        "/runs/new", data={"prompt": "a <b>site</b>", "config": "{oops", "csrf_token": token}
    )
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert "not valid JSON" in page and "a &lt;b&gt;site&lt;/b&gt;</textarea>" in page
    r = client.post("/runs/new", data={"prompt": "  ", "config": "", "csrf_token": token})
    assert r.status_code == 400 and "Describe what the run" in r.get_data(as_text=True)
    r = client.post(
        "/runs/new", data={"prompt": "a site", "config": '{"pages": 2}', "csrf_token": token}
    )
    assert r.status_code == 303
    with app.app_context():
        created, _ = runs.list_runs(user.account_id, 10, None, None)
    assert created[0].config == {"pages": 2} and r.location == f"/runs/{created[0].id}"


def test_page_posts_need_the_csrf_token_and_our_origin(app, client):
    user = make_user(app)
    sign_in(client, user)
    token = csrf(client)
    r = client.post("/runs/new", data={"prompt": "x", "csrf_token": "0" * 64})
    assert r.status_code == 403
    r = client.post(
        "/runs/new",
        data={"prompt": "x", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    r = client.post("/sign-out", data={}, headers={"Origin": "http://localhost"})
    assert r.status_code == 403  # no token: the session stays
    assert client.get("/runs").status_code == 200
    r = client.post("/sign-out", data={"csrf_token": token})
    assert r.status_code == 303
    assert client.get("/runs").status_code == 302


def test_preview_serves_only_the_runs_own_files_sandboxed(app, client):
    user = make_user(app)
    run = make_run(app, user, status="completed")
    other = make_run(app, make_user(app), status="completed")
    upload(
        app, run, "index.html", b'<link rel="stylesheet" href="styles.css"><h1>Hi</h1>', "text/html"
    )
    upload(app, run, "styles.css", b"h1 { color: red }", "text/css")
    upload(app, other, "secret.txt", b"not yours", "text/plain")
    with app.test_request_context():
        token = preview_token(run.id)
    # no session needed: the token is the key
    with client.get(f"/preview/{token}/styles.css") as r:
        assert r.status_code == 200 and r.data == b"h1 { color: red }"
        assert r.mimetype == "text/css"
        csp = r.headers["Content-Security-Policy"]
        assert csp.startswith("sandbox allow-scripts;") and "allow-same-origin" not in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
    with client.get(f"/preview/{token}/index.html") as page:
        assert page.status_code == 200 and page.data.startswith(b"<link")
    assert client.get(f"/preview/{token}/secret.txt").status_code == 404
    assert client.get(f"/preview/{token}/../secret.txt").status_code == 404
    assert client.get(f"/preview/{token[:-2]}xx/styles.css").status_code == 404


def test_run_page_frames_the_html_artifact_sandboxed(app, client):
    user = make_user(app)
    run = make_run(app, user, status="completed")
    upload(app, run, "index.html", b"<h1>Hi</h1>", "text/html")
    upload(app, run, "shot.png", b"\x89PNG", "image/png")
    sign_in(client, user)
    r = client.get(f"/runs/{run.id}")
    page = r.get_data(as_text=True)
    assert re.search(r'<iframe src="/preview/[^"]+/index.html"[^>]*sandbox="allow-scripts"', page)
    assert re.search(r'<img src="/preview/[^"]+/shot.png"', page)
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]


def test_assets_are_served_by_the_app(client):
    for name, kind in (("app.css", "text/css"), ("run.js", "text/javascript")):
        with client.get(f"/assets/{name}") as r:
            assert r.status_code == 200 and r.mimetype == kind
