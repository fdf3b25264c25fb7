"""Background work of a serving process: the trigger dispatcher and the periodic sweeps.

Every sweep has the dispatcher's shape (STYLE.md § Background work): a row says what is due, a
conditional UPDATE claims it (a lease that doubles as a fencing token), the side effect is done
only while the lease is still held, and a second process or a duplicate pass is harmless. A sweep
is a plain function ``run_once(app) -> int`` (how many items it handled) that tests call
directly; this module only decides *when* it runs.

``start(app)`` is the one call that starts a serving process's background work (gunicorn
workers via wsgi.py, ``flask run``); ``create_app`` never starts threads, and CLI commands and
tests start nothing unless they ask for it.

To add a sweep, append a ``Sweep`` to ``SWEEPS`` below (import its module lazily inside a small
function so that this module stays cheap to import).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

_EXTENSION = "designrun.background"
TICK = 1.0  # seconds between looks at which sweep is due


@dataclass(frozen=True)
class Sweep:
    """A periodic job: ``run_once(app)`` every ``every(config)`` seconds in each serving process."""

    name: str
    run_once: Callable[[Flask], Any]
    every: Callable[[Mapping[str, Any]], float]


def _daytona_watchdog(app: Flask) -> int:
    from designrun.triggers import sandboxes

    return sandboxes.watch_once(app)


def _daytona_orphans(app: Flask) -> int:
    from designrun.triggers import sandbox_orphans

    return sandbox_orphans.clean_orphans_once(app)


def _orphans(app: Flask) -> int:
    from designrun.services import orphans

    return orphans.run_once(app)


def _reap(app: Flask) -> int:
    from designrun.triggers import reaper

    return reaper.run_once(app)


def _local_runs(app: Flask) -> int:
    from designrun.triggers import local

    return local.run_once(app)


def _webhooks(app: Flask) -> Any:
    from designrun.triggers import webhooks

    return webhooks.run_once(app)


def _webhooks_every(config: Mapping[str, Any]) -> float:
    from designrun.triggers import webhooks

    return webhooks.every(config)


# The registry: each entry imports its module lazily (see the module docstring).
SWEEPS: list[Sweep] = [
    # Each sandbox row has its own next check (DAYTONA_WATCH_INTERVAL); the pass that finds
    # the due ones is cheap, and frequent so that a finished run's sandbox goes quickly.
    Sweep("daytona-watchdog", _daytona_watchdog, every=lambda config: 2.0),
    # The first pass runs at start-up.
    Sweep(
        "daytona-orphans",
        _daytona_orphans,
        every=lambda config: float(config.get("DAYTONA_CLEAN_INTERVAL") or 600),
    ),
    # Failed object deletions and never-registered uploads (services/orphans.py). The sweep's
    # own lease row decides when a whole pass is due (ORPHAN_SWEEP_INTERVAL); ticks in between
    # retry due deletions and continue a pass that stopped after its page budget.
    Sweep("orphans", _orphans, lambda config: min(30.0, float(config["ORPHAN_SWEEP_INTERVAL"]))),
    # runner_lost / start_timeout: a few times per the shorter timeout, at most every 30 s.
    Sweep(
        "reaper",
        _reap,
        lambda c: min(30.0, max(1.0, min(c["RUN_STALE_AFTER"], c["RUN_START_TIMEOUT"]) / 4)),
    ),
    # Local runner processes: cancels reach them, dead ones fail their run (every second, so a
    # cancel that landed on another worker or host stops the process well within 10 s).
    Sweep("local-runs", _local_runs, lambda c: 1.0),
    # Webhook deliveries due (triggers/webhooks.py), every WEBHOOK_SWEEP_INTERVAL (2 s).
    Sweep("webhooks", _webhooks, _webhooks_every),
]


class _State:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None


def start(app: Flask, bind_origin: str | None = None) -> None:
    """Start this process's dispatcher (when a runner backend is configured) and sweeps, once.

    ``bind_origin`` is where this server listens (``http://127.0.0.1:8000``): the local runner
    calls back there. gunicorn.conf.py finds it once the sockets are bound and hands it to the
    workers as DESIGNRUN_BIND_ORIGIN (wsgi.py); ``flask run`` takes it from its own options.
    """
    if app.extensions.get(_EXTENSION) is not None:
        return
    state = _State()
    app.extensions[_EXTENSION] = state
    if bind_origin:
        app.config["LOCAL_RUNNER_BIND_ORIGIN"] = bind_origin.rstrip("/")
    from designrun import startup

    startup.log_once(app)  # under gunicorn the master has logged it already

    from designrun.triggers import dispatcher, selected_backend

    if selected_backend(app.config) is not None:
        dispatcher.start(app)
    if SWEEPS:
        state.thread = threading.Thread(
            target=_loop, args=(app, state), name="dr-sweeps", daemon=True
        )
        state.thread.start()


def start_under_flask_run(app: Flask) -> bool:
    """Start background work when this process is the one ``flask run`` serves from.

    Called by create_app. Only the ``run`` command serves: other commands (``db upgrade``,
    ``users create``) and apps built outside the CLI (tests, gunicorn) start nothing here. With
    the reloader, the parent process only watches files; its child (WERKZEUG_RUN_MAIN) serves.
    """
    import click
    from flask.helpers import get_debug_flag
    from werkzeug.serving import is_running_from_reloader

    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.info_name != "run" or "port" not in ctx.params:
        return False
    reload = ctx.params.get("reload")
    if reload is None:
        reload = get_debug_flag()
    if reload and not is_running_from_reloader():
        return False
    host = str(ctx.params.get("host") or "127.0.0.1")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "localhost": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if ctx.params.get("cert") else "http"
    from designrun import startup

    os.environ[startup.LOGGED_MARKER] = "1"  # said below, where flask run's output goes
    start(app, f"{scheme}://{host}:{ctx.params['port']}")
    # Beside flask's own " * Running on …" lines (logging is not configured under flask run).
    click.echo(" * designrun: background work started (trigger dispatcher, sweeps)", err=True)
    click.echo(f" * {startup.summary(app.config)}", err=True)
    return True


def stop(app: Flask, wait: bool = True) -> None:
    """Stop what ``start`` started (leases left behind are taken over by any live process)."""
    state: _State | None = app.extensions.pop(_EXTENSION, None)
    if state is None:
        return
    state.stop.set()
    from designrun.triggers import dispatcher

    dispatcher.stop(app, wait=wait)
    if state.thread is not None and wait:
        state.thread.join(timeout=5)


def run_sweeps_once(app: Flask) -> dict[str, Any]:
    """Run every registered sweep once, inline (for tests and the CLI); name → its result."""
    return {sweep.name: sweep.run_once(app) for sweep in SWEEPS}


def _loop(app: Flask, state: _State) -> None:
    due: dict[str, float] = {}
    while not state.stop.is_set():
        now = time.monotonic()
        for sweep in SWEEPS:
            if due.get(sweep.name, 0.0) > now:
                continue
            try:
                sweep.run_once(app)
            except Exception:
                log.exception("sweep %s: pass failed", sweep.name)
            due[sweep.name] = time.monotonic() + max(0.1, float(sweep.every(app.config)))
        state.stop.wait(TICK)
