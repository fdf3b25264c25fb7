"""The pages in a real browser (Debian's chromium driven by Playwright), over real gunicorn.

One journey, as a person would take it: sign up → start a run (local runner, demo agent) → its
log lines arrive live and the progress reaches 100 % → the preview image and the rendered HTML
site (sandboxed, opaque origin, its own CSS) show → an artifact downloads → a long run is
cancelled → a stream that reconnects after the server restarts resumes without losing or
repeating a line. Screenshots of the pages are taken on the way; with
``DESIGNRUN_SCREENSHOTS=1`` they are written to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import REPO, GunicornServer, server_environment

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AGENT = Path(__file__).with_name("agent.py")
SHOTS = REPO / "docs" / "screenshots"


@pytest.fixture
def server_env(app: Any, database_url: str, tmp_path: Path) -> dict[str, str]:
    return server_environment(
        database_url,
        tmp_path,
        RUNNER_BACKEND="local",
        LOCAL_RUNNER_COMMAND=shlex.join([sys.executable, str(AGENT)]),
        LOCAL_RUNNER_CONCURRENCY="3",
        LOCAL_RUNNER_HEARTBEAT="0.5",
        DESIGNRUN_DEMO_DELAY="0.4",
        STREAM_PING_INTERVAL="1",
        GUNICORN_ACCESSLOG="",
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shoot(page: Any, name: str, tmp_path: Path) -> None:
    """A screenshot of the page; kept in docs/screenshots/ when DESIGNRUN_SCREENSHOTS=1."""
    target = tmp_path / f"{name}.png"
    page.screenshot(path=str(target))
    if os.environ.get("DESIGNRUN_SCREENSHOTS") == "1":
        from PIL import Image

        SHOTS.mkdir(parents=True, exist_ok=True)
        image = Image.open(target).convert("RGB").quantize(colors=96)
        image.save(SHOTS / f"{name}.png", optimize=True)


def log_sequences(page: Any) -> list[int]:
    return [
        int(s)
        for s in page.eval_on_selector_all("[data-log] li", "els => els.map(e => e.dataset.seq)")
    ]


def test_a_person_runs_a_design_watches_it_live_and_looks_at_what_it_made(
    server_env, browser, tmp_path
):
    with GunicornServer(server_env, tmp_path) as server:
        context = browser.new_context(
            viewport={"width": 1100, "height": 800}, accept_downloads=True
        )
        page = context.new_page()
        page.set_default_timeout(30_000)

        # Signed out: sent to sign in; then sign up (a mistake first: the form keeps the input).
        page.goto(server.url + "/runs")
        assert "/sign-in" in page.url
        shoot(page, "sign-in", tmp_path)
        page.get_by_role("link", name="Sign up").click()
        email = f"{secrets.token_hex(4)}@example.com"
        page.get_by_label("Name").fill("Ada <b>Lovelace</b>")
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password").fill("short")
        page.get_by_role("button", name="Sign up").click()
        assert page.get_by_role("alert").inner_text().startswith("Choose a password")
        assert page.get_by_label("E-mail").input_value() == email
        page.get_by_label("Password").fill("a-long-enough-password")
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_url("**/runs")

        # A new run: a bad JSON config is refused with a clear message, the prompt is kept.
        page.get_by_role("link", name="New run").first.click()
        prompt = "A landing page for a calm <script>ocean</script>-side bakery"
        page.get_by_label("What should it design?").fill(prompt)
        page.get_by_label("Configuration").fill("[1, 2]")
        page.get_by_role("button", name="Start run").click()
        assert "must be a JSON object" in page.locator("#config-error").inner_text()
        assert page.get_by_label("What should it design?").input_value() == prompt
        page.get_by_label("Configuration").fill('{"pages": 1}')
        shoot(page, "new-run", tmp_path)
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url("**/runs/*")
        assert page.locator("h1").inner_text() == prompt  # shown as text, never as markup
        page.evaluate("window.__noReload = true")

        # Live: lines appear and the progress reaches 100 % without a reload.
        page.wait_for_function("() => document.querySelectorAll('[data-log] li').length >= 5")
        page.wait_for_function(
            "() => document.querySelector('[data-progress]').value === 100"
            " && document.querySelector('[data-status-badge]').textContent === 'completed'",
            timeout=90_000,
        )
        assert page.evaluate("window.__noReload") is True
        seqs = log_sequences(page)
        assert seqs == list(range(1, len(seqs) + 1)), "each line once, in order"

        # What it made: the preview image and the HTML site in its sandboxed, opaque-origin frame.
        image = page.locator("img[data-image-preview]").first
        image.wait_for()
        page.wait_for_function(
            "() => [...document.querySelectorAll('img[data-image-preview]')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        frame_element = page.locator("iframe[data-html-preview]")
        frame_element.wait_for()
        assert frame_element.get_attribute("sandbox") == "allow-scripts"
        frame = frame_element.element_handle().content_frame()
        frame.wait_for_load_state()
        assert frame.evaluate("self.origin") == "null"
        # The site's own styles.css (a sibling artifact) applies: the default body margin is 8px.
        frame.wait_for_function("() => getComputedStyle(document.body).marginTop === '0px'")
        assert len(frame.evaluate("document.body.innerText")) > 20
        page.locator("[data-artifacts]").scroll_into_view_if_needed()
        shoot(page, "run-completed", tmp_path)
        page.evaluate("window.scrollTo(0, 0)")

        # Download an artifact: the bytes are the stored ones.
        link = page.locator("a[data-download]").first
        with page.expect_download() as info:
            link.click()
        downloaded = Path(info.value.path()).read_bytes()
        api = requests.Session()
        api.cookies.update({c["name"]: c["value"] for c in context.cookies()})
        content = api.get(server.url + link.get_attribute("href"), timeout=30)
        assert content.status_code == 200 and downloaded == content.content and downloaded

        # The runs list.
        page.goto(server.url + "/runs")
        assert page.locator(".run-row").count() == 1
        shoot(page, "runs", tmp_path)

        # A long run: cancel it from its page.
        page.goto(server.url + "/runs/new")
        page.get_by_label("What should it design?").fill("[slow] a very long brochure")
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url("**/runs/*")
        page.wait_for_function("() => document.querySelectorAll('[data-log] li').length >= 10")
        shoot(page, "run-live", tmp_path)
        slow_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        runner = {"Authorization": f"Bearer {server_env['RUNNER_AUTH_SECRET']}"}
        page.get_by_role("button", name="Cancel run").click()  # POST …/cancel (the JSON API)
        page.wait_for_function(
            "() => document.querySelector('[data-status-badge]').textContent === 'cancelled'"
        )
        assert page.get_by_role("button", name="Retry").is_visible()
        assert page.get_by_role("button", name="Cancel run").is_hidden()
        cancelled = api.get(f"{server.url}/api/design/runs/{slow_id}", timeout=30).json()["run"]
        assert cancelled["failureReason"] == "cancelled_by_user"

        # Retry it from its page: a new run with the same prompt opens.
        page.get_by_role("button", name="Retry").click()
        page.wait_for_function(f"() => !location.pathname.endsWith('{slow_id}')")
        page.wait_for_function("() => document.querySelectorAll('[data-log] li').length >= 3")
        retried_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        retried = api.get(f"{server.url}/api/design/runs/{retried_id}", timeout=30).json()["run"]
        assert retried["retryOf"] == slow_id and retried["prompt"] == "[slow] a very long brochure"

        # Delete it from its page (after confirming): back to the list, the run is gone.
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Delete").click()
        page.wait_for_url("**/runs")
        gone = api.get(f"{server.url}/api/design/runs/{retried_id}", timeout=30)
        assert gone.status_code == 404

        # Reconnect: the server restarts under an open stream; nothing is lost or repeated.
        page.goto(server.url + "/runs/new")
        page.get_by_label("What should it design?").fill("[quiet] a page written by the test")
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url("**/runs/*")
        run_id = page.url.rstrip("/").rsplit("/", 1)[-1]

        def post(message: str) -> None:
            r = requests.post(
                f"{server.url}/api/runner/runs/{run_id}/events",
                json={"eventType": "test.line", "message": message},
                headers=runner,
                timeout=30,
            )
            assert r.status_code == 200, r.text

        for n in range(1, 6):
            post(f"before restart {n}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-log] li')]"
            ".some(l => l.textContent.endsWith('before restart 5'))"
        )
        server.stop()
        page.locator("[data-connection]").wait_for(state="visible")
        server.start().wait_ready()
        for n in range(1, 6):
            post(f"after restart {n}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-log] li')]"
            ".some(l => l.textContent.endsWith('after restart 5'))",
            timeout=60_000,
        )
        stored = api.get(
            f"{server.url}/api/design/runs/{run_id}/events", params={"limit": 1000}, timeout=30
        ).json()["events"]
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-log] li').length >= {len(stored)}"
        )
        assert log_sequences(page) == [e["sequence"] for e in stored]
        texts = page.eval_on_selector_all("[data-log] li", "els => els.map(e => e.textContent)")
        assert [t.split(" ", 1)[1] for t in texts] == [e["message"] or "" for e in stored]
        assert page.locator("[data-connection]").is_hidden()
        api.post(
            f"{server.url}/api/runner/runs/{run_id}/status",
            json={"status": "cancelled"},
            headers=runner,
            timeout=30,
        )

        # Readable on a phone.
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.add_cookies(context.cookies())
        small = phone.new_page()
        small.goto(server.url + "/runs")
        assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        shoot(small, "runs-phone", tmp_path)
        phone.close()
        context.close()
