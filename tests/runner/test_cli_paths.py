"""designrun-runner does not show users the runner host's temp path (issue 6 item 20).

The command runs in a temporary folder (``/tmp/designrun-run-…``) on the runner's host; lines
that mention it (the demo agent's "output in …", a traceback, an error) reach the user as events
and as the run's error. The path is replaced by ``$DESIGNRUN_OUTPUT_DIR`` before anything is sent.
"""

from __future__ import annotations

import json
import sys
import tempfile

from designrun.runner import cli
from tests.runner.conftest import TOKEN

SCRIPT = r"""
import os, sys
here = os.environ["DESIGNRUN_OUTPUT_DIR"]
print("output in", here)
print("cwd", os.getcwd())
sys.stderr.write(f"cannot write to {here}/index.html: disk full\n")
sys.exit(3)
"""


def test_events_and_error_do_not_carry_the_temp_path(fake, tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"callbackUrl": fake.callback_url, "runnerToken": TOKEN}))
    code = cli.main(["--job", str(job), "--heartbeat", "0.2", "--", sys.executable, "-c", SCRIPT])
    assert code == 3
    assert fake.status == "failed" and "disk full" in (fake.error or ""), fake.error
    sent = json.dumps([fake.events, fake.error])
    messages = [e.get("message") or "" for e in fake.events]
    assert any("output in $DESIGNRUN_OUTPUT_DIR" in m for m in messages), messages
    assert "designrun-run-" not in sent, sent
    assert tempfile.gettempdir() + "/" not in sent, sent


def test_the_demo_agent_does_not_print_its_output_path(tmp_path):
    import io

    from designrun.agents import demo

    out = io.StringIO()
    settings = demo.Settings("a page", {}, None, tmp_path / "out", 0.0)
    demo.run(settings, out=out, err=io.StringIO(), sleep=lambda _: None)
    assert str(tmp_path) not in out.getvalue()
