"""gunicorn settings for designrun (``gunicorn wsgi:app`` reads this file from the cwd).

gthread workers, 2 x cores + 1 processes. A live event stream (GET …/events/stream) holds its
thread for as long as the client watches, so a sync worker would be taken by one viewer. Each
process holds at most STREAM_MAX_PER_PROCESS streams (503 + Retry-After above that) and has
GUNICORN_API_THREADS threads more than that, so streams can never take the threads the runner
and user API need. Why gthread and not gevent: docs/architecture.md § Streams. Every value can
be overridden by GUNICORN_* style flags or the environment variables read below.
"""

import multiprocessing
import os
import shutil
import sys
import tempfile

# /metrics under gunicorn (docs/operations.md): every worker writes its samples into one folder
# that the scraped worker aggregates. prometheus_client reads the variable when it is imported,
# so it is set here, in the master, before any worker (or designrun) is loaded. An operator's
# own folder is emptied at start (stale files from a previous master would be counted again);
# a folder made here is also removed at exit.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="designrun-metrics-")

from dotenv import load_dotenv  # noqa: E402  (after the metrics folder is set)

from designrun.config import DEFAULT_STREAMS  # noqa: E402

# The settings below read the environment, .env included (wsgi.py loads it again per worker).
load_dotenv()

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
if worker_class == "gthread":
    # gthread that spreads kept-alive connections evenly over the workers
    # (designrun/gunicorn_worker.py says why); any other class is gunicorn's own.
    worker_class = "designrun.gunicorn_worker.BalancedThreadWorker"
_streams = os.environ.get("STREAM_MAX_PER_PROCESS", "").strip()
threads = int(os.environ.get("GUNICORN_API_THREADS", "8")) + (
    int(_streams) if _streams else DEFAULT_STREAMS
)
# Long uploads stream through a worker thread: allow them time (gthread workers heartbeat from
# their main loop, so a long stream or upload never trips it).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 20
keepalive = 5
# A worker is replaced after this many requests (a guard against slow leaks). Not too often: a
# replacement closes the worker's keep-alive connections and ends its live streams (clients
# reconnect), and at ingestion rates 10,000 requests came every half minute per worker, a
# latency spike each time (bench/README.md). 0 turns replacement off.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "200000"))
max_requests_jitter = max_requests // 10
# GUNICORN_ACCESSLOG="" turns the access log off (benchmarks); a path writes it there.
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
# Never log request headers (they carry bearer tokens); this format has none, only the response's
# X-Request-ID. LOG_FORMAT=json turns both logs into one JSON object per line (the logger class).
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
logger_class = "designrun.observability.GunicornLogger"
# gunicorn >= 24 opens a control socket at one fixed path per user; several servers on one
# machine (tests, benchmarks, side-by-side installs) would fight over it. Not needed here.
control_socket_disable = True
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


# Health checks (docs/deploy.md): a load balancer or orchestrator probes GET /readyz (database,
# schema, storage; 503 names what fails) to route traffic, and GET /livez (the process answers)
# to decide on a restart. Both are cheap enough for a probe every few seconds; with
# graceful_timeout above, a host taken out of rotation finishes the requests it holds.


def on_starting(server):
    """Check the configuration once in the master, before any worker is forked.

    A bad setting stops the whole server with one line, instead of workers that fail to boot
    and are respawned forever. The master also creates instance/ secrets here, once, and logs
    the one line saying what the server runs with (designrun/startup.py), and
    empties the metrics folder.
    """
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.unlink(os.path.join(metrics_dir, name))
    from dotenv import load_dotenv

    from designrun import create_app
    from designrun.config import ConfigError

    load_dotenv()
    try:
        app = create_app()
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        sys.exit(1)
    server.designrun_config = app.config  # for when_ready's start-up line


def post_fork(server, worker):
    """Large buffers go straight back to the system when freed: glibc's mmap threshold fixed at
    4 MiB. By default glibc raises that threshold to the size of the largest block freed, up
    to 32 MiB, so an S3 upload's 8 MiB parts then came from the heap arena of whichever of the
    worker's threads served it and stayed there: the worker's RSS grew by tens of MiB per large
    upload (bench/artifacts.py measures it). Not lower, and with a 16 MiB trim threshold: the
    1 MiB buffers of a body read are reused from the heap rather than mapped and unmapped (a
    page fault per 4 KiB each time)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is not None:  # glibc; musl and others have no such knob (and no such growth)
        mallopt(-3, 4 * 1024 * 1024)  # M_MMAP_THRESHOLD
        mallopt(-1, 16 * 1024 * 1024)  # M_TRIM_THRESHOLD


def post_worker_init(worker):
    """Move the loaded application out of the garbage collector's way, and end the worker's
    live streams as soon as it is asked to stop (SIGTERM: restart, reload, scale down), so
    clients reconnect elsewhere at once instead of after graceful_timeout.

    gc.freeze(): the ~120,000 objects of the imported code and the app live as long as the
    process. Left in the collector's oldest generation, every full collection walked them all:
    80-380 ms with the whole process paused (every request it holds waits), a few times a
    minute under load. Frozen, a full collection walks only what requests left behind
    (a few thousand objects, a few ms). bench/README.md § p99 has the measurements.
    """
    import gc
    import signal

    gc.collect()
    gc.freeze()

    graceful = worker.handle_exit

    def handle_exit(sig, frame):
        from designrun.services import streams

        streams.stop_all()
        graceful(sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)


def child_exit(server, worker):
    """A worker exited: its live gauges (open streams) stop counting; its counters remain."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    supervisor = getattr(server, "designrun_event_writer", None)
    if supervisor is not None:
        supervisor.stop()
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def when_ready(server):
    """Once the sockets are bound (before any worker is forked): tell the workers the address.

    The local runner calls back to this server's own address, never to one a request names
    (its Host header); with port 0 the kernel picks the port, so it is read from the socket.
    """
    for listener in server.LISTENERS:
        address = listener.sock.getsockname()
        if not isinstance(address, tuple):
            continue  # a Unix socket: set LOCAL_RUNNER_ORIGIN for the local runner
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address[0], address[0])  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if server.cfg.is_ssl else "http"
        os.environ["DESIGNRUN_BIND_ORIGIN"] = f"{scheme}://{host}:{address[1]}"
        break
    _start_event_writer(server)
    _log_summary(server)


def _start_event_writer(server):
    """On a SQLite file, one process commits the events of every worker
    (designrun/services/event_writer.py says why); DESIGNRUN_SQLITE_EVENT_WRITER=0 turns it off."""
    from designrun.services import event_writer

    database = event_writer.database_of(server.designrun_config["SQLALCHEMY_DATABASE_URI"])
    if database is None or not event_writer.enabled() or event_writer.socket_path(database) is None:
        return
    server.designrun_event_writer = event_writer.Supervisor(database)
    server.designrun_event_writer.start()


def _log_summary(server):
    """The one line saying what the server runs with (designrun/startup.py), once, here: the
    workers inherit the marker and do not repeat it."""
    from designrun import startup

    config = getattr(server, "designrun_config", None)
    if config is None:
        return
    config = {**config, "LOCAL_RUNNER_BIND_ORIGIN": os.environ.get("DESIGNRUN_BIND_ORIGIN")}
    server.log.info("%s", startup.summary(config))
    os.environ[startup.LOGGED_MARKER] = "1"
