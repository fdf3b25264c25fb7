"""Runs: the list, a new run, a run's page (live log, artifacts, previews)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import redirect, render_template, request, url_for

from designrun.api.parsing import validate
from designrun.api.schemas import CreateRun
from designrun.errors import InvalidRequestError, RunNotFoundError
from designrun.models import Artifact, Run, RunStatus
from designrun.models.types import utcnow
from designrun.services import runs, streams
from designrun.services.previews import artifact_path
from designrun.web import web
from designrun.web.common import account_id, check_form, duration, signed_in
from designrun.web.preview import preview_token

PAGE_SIZE = 20
LOG_LINES = 1000  # lines a run page renders at most; earlier ones on request
STATUSES = [s.value for s in RunStatus]


def _account() -> uuid.UUID:
    account = account_id()
    assert account is not None  # noqa: S101 - @signed_in ran first
    return account


def _run_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise RunNotFoundError() from None


@web.get("/runs")
@signed_in
def runs_list() -> Any:
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        status = None
    cursor = request.args.get("cursor") or None
    try:
        page, next_cursor = runs.list_runs(_account(), PAGE_SIZE, cursor, status)
    except InvalidRequestError:
        page, next_cursor = runs.list_runs(_account(), PAGE_SIZE, None, status)
    more = url_for("web.runs_list", cursor=next_cursor, status=status) if next_cursor else None
    template = "_run_rows.html" if request.args.get("partial") else "runs.html"
    return render_template(template, runs=page, more=more, status=status, statuses=STATUSES)


@web.route("/runs/new", methods=["GET", "POST"])
@signed_in
def new_run() -> Any:
    form = {"prompt": "", "config": ""}
    if request.method == "GET":
        return render_template("new_run.html", form=form, errors={})
    check_form()
    form = {"prompt": request.form.get("prompt", ""), "config": request.form.get("config", "")}
    errors: dict[str, str] = {}
    config: Any = None
    if form["config"].strip():
        try:
            config = json.loads(form["config"])
        except ValueError as exc:
            errors["config"] = f"The configuration is not valid JSON: {exc}."
        else:
            if not isinstance(config, dict):
                errors["config"] = 'The configuration must be a JSON object, like {"pages": 3}.'
    if not form["prompt"].strip():
        errors["prompt"] = "Describe what the run should design."
    if not errors:
        try:
            body = validate(CreateRun, {"prompt": form["prompt"], "config": config})
        except InvalidRequestError as exc:
            field = "config" if exc.message.startswith("config") else "prompt"
            errors[field] = exc.message
    if errors:
        return render_template("new_run.html", form=form, errors=errors), 400
    origin = request.host_url.rstrip("/")
    run = runs.create_run(_account(), body.prompt, body.config, origin)
    return redirect(url_for("web.run_page", run_id=run.id), code=303)


def _artifact_views(run: Run, artifacts: list[Artifact]) -> dict[str, Any]:
    token = preview_token(run.id)
    items = []
    html = None
    for artifact in artifacts:
        path = artifact_path(artifact)
        kind = (artifact.content_type or "").split(";")[0].strip().lower()
        item = {
            "artifact": artifact,
            "name": path,
            "download": url_for(
                "design_api.download_artifact", run_id=run.id, artifact_id=artifact.id
            ),
            "preview": url_for("web.preview", token=token, path=path),
            "image": kind.startswith("image/"),
        }
        if kind == "text/html" and (html is None or path == "index.html"):
            html = item
        items.append(item)
    return {"artifacts": items, "html": html}


@web.get("/runs/<run_id>")
@signed_in
def run_page(run_id: str) -> Any:
    account = _account()
    run = runs.get_run(account, _run_id(run_id))
    events, earlier = streams.recent_events(account, run.id, LOG_LINES)
    artifacts = runs.list_artifacts(account, run.id)
    now = utcnow()
    terminal = RunStatus(run.status).terminal
    return render_template(
        "run.html",
        run=run,
        events=events,
        earlier=earlier,
        terminal=terminal,
        duration=duration(run.started_at, run.completed_at if terminal else now),
        failure_reason=getattr(run, "failure_reason", None),
        max_lines=LOG_LINES,
        **_artifact_views(run, artifacts),
    )


@web.get("/runs/<run_id>/artifacts")
@signed_in
def run_artifacts(run_id: str) -> Any:
    """The artifacts section alone (the run page refreshes it when the run changes)."""
    account = _account()
    run = runs.get_run(account, _run_id(run_id))
    artifacts = runs.list_artifacts(account, run.id)
    return render_template("_artifacts.html", run=run, **_artifact_views(run, artifacts))
