"""gunicorn settings for designrun (``gunicorn wsgi:app`` reads this file from the cwd).

Sync workers, 2 x cores + 1: measured steadier than gthread on SQLite, whose busy handler
sleeps (shared/bench/README.md). Every value can be overridden by GUNICORN_* style flags or
the environment variables read below.
"""

import multiprocessing
import os
import sys

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
# Long uploads stream through a sync worker: allow them time.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 20
keepalive = 5
max_requests = 10000
max_requests_jitter = 1000
# GUNICORN_ACCESSLOG="" turns the access log off (benchmarks); a path writes it there.
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
# Never log headers (they carry bearer tokens); this format has none.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# gunicorn >= 24 opens a control socket at one fixed path per user; several servers on one
# machine (tests, benchmarks, side-by-side installs) would fight over it. Not needed here.
control_socket_disable = True
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    """Check the configuration once in the master, before any worker is forked.

    A bad setting stops the whole server with one line, instead of workers that fail to boot
    and are respawned forever. The master also creates instance/ secrets here, once, and logs
    the one line saying what the server runs with (designrun/startup.py).
    """
    from dotenv import load_dotenv

    from designrun import create_app
    from designrun.config import ConfigError

    load_dotenv()
    try:
        app = create_app()
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        sys.exit(1)
    from designrun import startup

    # Once, here: the workers inherit the marker and do not repeat it.
    server.log.info("%s", startup.summary(app.config))
    os.environ[startup.LOGGED_MARKER] = "1"
