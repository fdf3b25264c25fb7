"""Settings from the environment (API.md § Environment).

Every key is exactly the API.md variable name. Unset secrets are generated once into
``instance/`` (owner-only) and reused, so a restart keeps sessions and runner tokens valid.
A secret that is set but too short stops the service with one line naming the variable.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32
# Live streams one process may hold (STREAM_MAX_PER_PROCESS); gunicorn.conf.py adds API threads.
DEFAULT_STREAMS = 200

# Every environment variable the service reads (API.md's table and designrun's own), so that
# tests and benchmarks can start from a clean slate without keeping their own copy of the list.
ENVIRONMENT = (
    "RUNNER_AUTH_SECRET",
    "RUNNER_TOKEN_TTL",
    "DAYTONA_API_URL",
    "DAYTONA_API_KEY",
    "EXPO_PUBLIC_WORKER_ORIGIN",
    "DATABASE_URL",
    "SECRET_KEY",
    "STORAGE_BACKEND",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "S3_REGION",
    "S3_ADDRESSING_STYLE",
    "S3_PRESIGN_DOWNLOADS",
    "UPLOAD_URL_TTL",
    "ORPHAN_GRACE_SECONDS",
    "ORPHAN_SWEEP_INTERVAL",
    "TRUSTED_ORIGINS",
    "TRUSTED_PROXIES",
    "ALLOW_SIGNUP",
    "MAX_UPLOAD_BYTES",
    "MAX_JSON_BYTES",
    "STORAGE_LOCAL_DIR",
    "SESSION_TTL",
    "TRIGGER_MAX_ATTEMPTS",
    "TRIGGER_TIMEOUT",
    "TRIGGER_BACKOFF_BASE",
    "RUNNER_BACKEND",
    "LOCAL_RUNNER_COMMAND",
    "LOCAL_RUNNER_CONCURRENCY",
    "LOCAL_RUNNER_ORIGIN",
    "LOCAL_RUNNER_HEARTBEAT",
    "LOCAL_RUNNER_ENV",
    "RUN_STALE_AFTER",
    "RUN_START_TIMEOUT",
    "DESIGNRUN_INSTANCE_PATH",
    "DAYTONA_TARGET",
    "DAYTONA_SNAPSHOT",
    "DAYTONA_IMAGE",
    "DAYTONA_CPU",
    "DAYTONA_MEMORY",
    "DAYTONA_DISK",
    "DAYTONA_AUTO_STOP_MINUTES",
    "DAYTONA_AUTO_DELETE_MINUTES",
    "DAYTONA_KEEP_SECONDS",
    "DAYTONA_NETWORK_ALLOW",
    "DAYTONA_AGENT_COMMAND",
    "DAYTONA_CREATE_TIMEOUT",
    "DAYTONA_WATCH_INTERVAL",
    "DAYTONA_CLEAN_INTERVAL",
    "DESIGNRUN_SQLITE_SYNCHRONOUS",
    "STREAM_MAX_PER_PROCESS",
    "STREAM_PING_INTERVAL",
    "STREAM_POLL_INTERVAL",
    "METRICS_TOKEN",
    "LOG_FORMAT",
    "WEBHOOK_ALLOW_PRIVATE",
    # Set by gunicorn.conf.py for its workers (the bound address), not by operators.
    "DESIGNRUN_BIND_ORIGIN",
)


class ConfigError(Exception):
    """A setting that stops the service at start-up; ``str()`` is the one line to print."""


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"designrun: {name} must be true or false, not {raw!r}")


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"designrun: {name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"designrun: {name} must be at least {minimum}")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"designrun: {name} must be a number, not {raw!r}") from None
    if not 0 <= value < 3600:
        raise ConfigError(f"designrun: {name} must be between 0 and 3600")
    return value


def _env_positive(name: str, default: float) -> float:
    value = _env_float(name, default)
    if value <= 0:
        raise ConfigError(f"designrun: {name} must be more than 0")
    return value


def _env_str(name: str) -> str | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    return raw.strip()


def ensure_instance_folder(instance_path: str | os.PathLike[str]) -> None:
    """Create the instance folder (database, secrets, local artifacts live there by default).

    Raises ConfigError (one line) when it cannot be created.
    """
    try:
        Path(instance_path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"designrun: cannot create the instance folder {instance_path} "
            f"({exc.strerror or exc}); set DESIGNRUN_INSTANCE_PATH to a writable folder"
        ) from None


def persistent_secret(
    instance_path: str | os.PathLike[str], name: str, variable: str | None = None
) -> str:
    """Return the secret kept in ``instance/<name>``, creating it once (mode 0600).

    Several gunicorn workers may start at the same moment: the secret is written to a
    private temporary file (synced) and then hard-linked into place, which fails for all but
    the first writer; the others read the winner's file. A reader never sees a half-written
    secret. Raises ConfigError (one line naming the file and ``variable``) when the file cannot
    be written, or holds an empty or short secret (it is never replaced silently: sessions and
    tokens signed with it would all stop working).
    """
    variable = variable or name.upper()
    directory = Path(instance_path)
    ensure_instance_folder(directory)
    target = directory / name
    try:
        value = _read_secret(target, variable)
        if value is None:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")  # mode 0600
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(48))
                    handle.flush()
                    os.fsync(handle.fileno())  # a power cut must not leave an empty secret
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    pass
            finally:
                os.unlink(tmp)
            value = _read_secret(target, variable)
    except OSError as exc:
        raise ConfigError(
            f"designrun: cannot write {target} ({exc.strerror or exc}); make the instance folder "
            f"writable or set {variable}"
        ) from None
    if value is None:  # pragma: no cover - deleted again between link and read
        raise ConfigError(f"designrun: {target} vanished while starting; start again")
    return value


def _read_secret(target: Path, variable: str) -> str | None:
    """The secret in ``target``; None when there is no such file; ConfigError when too short."""
    try:
        value = target.read_text().strip()
    except FileNotFoundError:
        return None
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"designrun: {target} is empty or shorter than {MIN_SECRET_LENGTH} characters; "
            f"delete it to have a new {variable} generated, or set {variable}"
        )
    return value


def normalise_database_url(url: str) -> str:
    """Map the accepted PostgreSQL spellings onto psycopg 3 (API.md § Environment)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise ConfigError(
        "designrun: DATABASE_URL must start with sqlite:///, postgresql://, postgres:// "
        "or postgresql+psycopg://"
    )


def _check_secret(name: str, value: str | None) -> None:
    if value is not None and len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"designrun: {name} is set but shorter than {MIN_SECRET_LENGTH} characters; "
            f"set it to a random string of at least {MIN_SECRET_LENGTH} characters "
            "(or unset it to have one generated under instance/)"
        )


def load_config(instance_path: str) -> dict[str, Any]:
    """Read every API.md setting from the environment; raise ConfigError on a bad one."""
    runner_secret = _env_str("RUNNER_AUTH_SECRET")
    secret_key = _env_str("SECRET_KEY")
    _check_secret("RUNNER_AUTH_SECRET", runner_secret)
    _check_secret("SECRET_KEY", secret_key)
    storage_backend = (_env_str("STORAGE_BACKEND") or "local").lower()
    if storage_backend not in {"local", "s3"}:
        raise ConfigError("designrun: STORAGE_BACKEND must be 'local' or 's3'")
    if storage_backend == "s3" and not _env_str("S3_BUCKET"):
        raise ConfigError("designrun: STORAGE_BACKEND=s3 needs S3_BUCKET")
    addressing = (_env_str("S3_ADDRESSING_STYLE") or "auto").lower()
    if addressing not in {"auto", "path", "virtual"}:
        raise ConfigError("designrun: S3_ADDRESSING_STYLE must be 'auto', 'path' or 'virtual'")
    database_url = _env_str("DATABASE_URL") or (
        "sqlite:///" + os.path.join(instance_path, "designrun.db")
    )
    origins = _env_str("TRUSTED_ORIGINS") or ""
    backend = (_env_str("RUNNER_BACKEND") or "").lower() or None
    if backend not in {None, "jobs", "daytona", "local", "none"}:
        raise ConfigError("designrun: RUNNER_BACKEND must be 'local', 'jobs', 'daytona' or 'none'")
    if backend == "jobs" and not _env_str("DAYTONA_API_URL"):
        raise ConfigError("designrun: RUNNER_BACKEND=jobs needs DAYTONA_API_URL")
    if backend == "daytona":
        _check_sandbox_settings()
    return {
        "RUNNER_AUTH_SECRET": runner_secret,
        "SECRET_KEY": secret_key,
        "RUNNER_TOKEN_TTL": _env_int("RUNNER_TOKEN_TTL", 86400, minimum=1),
        # None: the job request (jobs) when DAYTONA_API_URL is set, else the local runner.
        "RUNNER_BACKEND": backend,
        "LOCAL_RUNNER_COMMAND": _env_str("LOCAL_RUNNER_COMMAND"),
        "LOCAL_RUNNER_CONCURRENCY": _env_int("LOCAL_RUNNER_CONCURRENCY", 2, minimum=1),
        "LOCAL_RUNNER_ORIGIN": _env_str("LOCAL_RUNNER_ORIGIN"),
        # Seconds between the local runner's liveness reports (how fast it sees a cancel).
        "LOCAL_RUNNER_HEARTBEAT": _env_float("LOCAL_RUNNER_HEARTBEAT", 2.0),
        # Extra variable names passed to local runner processes (an allow-list, comma-separated).
        "LOCAL_RUNNER_ENV": [
            n.strip() for n in (_env_str("LOCAL_RUNNER_ENV") or "").split(",") if n.strip()
        ],
        # Reapers (API.md Part 2 § Run lifecycle): seconds without a runner callback before a
        # running run is runner_lost, and after delivery before a silent run is start_timeout.
        "RUN_STALE_AFTER": _env_int("RUN_STALE_AFTER", 1800, minimum=1),
        "RUN_START_TIMEOUT": _env_int("RUN_START_TIMEOUT", 900, minimum=1),
        "DAYTONA_API_URL": _env_str("DAYTONA_API_URL"),
        "DAYTONA_API_KEY": _env_str("DAYTONA_API_KEY"),
        "EXPO_PUBLIC_WORKER_ORIGIN": _env_str("EXPO_PUBLIC_WORKER_ORIGIN"),
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(database_url),
        "STORAGE_BACKEND": storage_backend,
        "S3_BUCKET": _env_str("S3_BUCKET"),
        "S3_ENDPOINT_URL": _env_str("S3_ENDPOINT_URL"),
        "S3_REGION": _env_str("S3_REGION"),
        # MinIO and most self-hosted stores want "path" (http://host:9000/bucket/key).
        "S3_ADDRESSING_STYLE": addressing,
        # Downloads from s3 storage: a 302 to a presigned GET, or streamed by the service.
        "S3_PRESIGN_DOWNLOADS": _env_bool("S3_PRESIGN_DOWNLOADS", True),
        # Lifetime (seconds) of a direct upload URL (POST …/artifacts/uploads).
        "UPLOAD_URL_TTL": _env_int("UPLOAD_URL_TTL", 3600, minimum=60),
        # An object under runs/ that no artifact names is removed once it is this old (seconds).
        "ORPHAN_GRACE_SECONDS": _env_int("ORPHAN_GRACE_SECONDS", 86400, minimum=60),
        # Seconds between two passes of the orphan sweep in each serving process.
        "ORPHAN_SWEEP_INTERVAL": _env_int("ORPHAN_SWEEP_INTERVAL", 600, minimum=1),
        "STORAGE_LOCAL_DIR": _env_str("STORAGE_LOCAL_DIR")
        or os.path.join(instance_path, "artifacts"),
        "TRUSTED_ORIGINS": [o.strip().rstrip("/") for o in origins.split(",") if o.strip()],
        # Reverse proxies in front of the service (each appends to X-Forwarded-For): the client
        # address and scheme are taken from that many hops back. 0: the headers are ignored.
        "TRUSTED_PROXIES": _env_int("TRUSTED_PROXIES", 0, minimum=0),
        "ALLOW_SIGNUP": _env_bool("ALLOW_SIGNUP", True),
        "MAX_UPLOAD_BYTES": _env_int("MAX_UPLOAD_BYTES", 1073741824, minimum=1),
        # Largest JSON body (event batches); other JSON endpoints are bounded tighter
        # (api/limits.py). JSON is parsed in memory, uploads are streamed.
        "MAX_JSON_BYTES": _env_int("MAX_JSON_BYTES", 32 * 1024 * 1024, minimum=1),
        "SESSION_TTL": _env_int("SESSION_TTL", 604800, minimum=1),
        "TRIGGER_MAX_ATTEMPTS": _env_int("TRIGGER_MAX_ATTEMPTS", 5, minimum=1),
        "TRIGGER_TIMEOUT": _env_int("TRIGGER_TIMEOUT", 10, minimum=1),
        # Seconds before the 2nd attempt; doubles per attempt (1, 2, 4, 8 by default).
        "TRIGGER_BACKOFF_BASE": _env_float("TRIGGER_BACKOFF_BASE", 1.0),
        # Live tail (API.md Part 2): open streams one process holds (each holds a gunicorn
        # thread: gunicorn.conf.py sizes its threads from this), the ``: ping`` period, and the
        # SQLite waiter's poll period (PostgreSQL is woken by NOTIFY).
        "STREAM_MAX_PER_PROCESS": _env_int("STREAM_MAX_PER_PROCESS", DEFAULT_STREAMS, minimum=0),
        "STREAM_PING_INTERVAL": _env_positive("STREAM_PING_INTERVAL", 15.0),
        "STREAM_POLL_INTERVAL": _env_positive("STREAM_POLL_INTERVAL", 0.2),
        # Operations (docs/operations.md): /metrics bearer, log lines, webhook address rule.
        "METRICS_TOKEN": _env_str("METRICS_TOKEN"),
        "LOG_FORMAT": _log_format(),
        "WEBHOOK_ALLOW_PRIVATE": _env_bool("WEBHOOK_ALLOW_PRIVATE", False),
        **_sandbox_settings(),
    }


def _check_sandbox_settings() -> None:
    if not _env_str("DAYTONA_API_KEY"):
        raise ConfigError(
            "designrun: RUNNER_BACKEND=daytona needs DAYTONA_API_KEY "
            "(RUNNER_BACKEND=jobs is the job request to DAYTONA_API_URL)"
        )
    if not (_env_str("DAYTONA_SNAPSHOT") or _env_str("DAYTONA_IMAGE")):
        raise ConfigError(
            "designrun: RUNNER_BACKEND=daytona needs DAYTONA_SNAPSHOT (or DAYTONA_IMAGE): "
            "an image with designrun-runner installed (docs/daytona.md)"
        )


def _sandbox_settings() -> dict[str, Any]:
    """The Daytona sandbox backend's settings (docs/daytona.md § Settings)."""

    def optional_int(name: str) -> int | None:
        return _env_int(name, 0, minimum=1) if _env_str(name) else None

    return {
        "DAYTONA_TARGET": _env_str("DAYTONA_TARGET"),
        "DAYTONA_SNAPSHOT": _env_str("DAYTONA_SNAPSHOT"),
        "DAYTONA_IMAGE": _env_str("DAYTONA_IMAGE"),
        # Resources (GiB for memory and disk); Daytona applies them to image-based sandboxes.
        "DAYTONA_CPU": optional_int("DAYTONA_CPU"),
        "DAYTONA_MEMORY": optional_int("DAYTONA_MEMORY"),
        "DAYTONA_DISK": optional_int("DAYTONA_DISK"),
        # Backstops in case designrun is not there to clean up: Daytona stops an idle sandbox,
        # then deletes a stopped one (minutes).
        "DAYTONA_AUTO_STOP_MINUTES": _env_int("DAYTONA_AUTO_STOP_MINUTES", 15, minimum=1),
        "DAYTONA_AUTO_DELETE_MINUTES": _env_int("DAYTONA_AUTO_DELETE_MINUTES", 60, minimum=0),
        # How long a finished run's sandbox is kept for debugging (0: deleted at once).
        "DAYTONA_KEEP_SECONDS": _env_int("DAYTONA_KEEP_SECONDS", 0, minimum=0),
        # Where else the sandbox may connect besides the callback origin ('*': anywhere).
        "DAYTONA_NETWORK_ALLOW": _env_str("DAYTONA_NETWORK_ALLOW"),
        "DAYTONA_AGENT_COMMAND": _env_str("DAYTONA_AGENT_COMMAND"),
        "DAYTONA_CREATE_TIMEOUT": _env_int("DAYTONA_CREATE_TIMEOUT", 180, minimum=10),
        "DAYTONA_WATCH_INTERVAL": _env_int("DAYTONA_WATCH_INTERVAL", 10, minimum=1),
        "DAYTONA_CLEAN_INTERVAL": _env_int("DAYTONA_CLEAN_INTERVAL", 600, minimum=10),
    }


def _log_format() -> str:
    value = (_env_str("LOG_FORMAT") or "text").lower()
    if value not in {"text", "json"}:
        raise ConfigError("designrun: LOG_FORMAT must be 'text' or 'json'")
    return value


def finish_config(config: dict[str, Any], instance_path: str) -> None:
    """Fill unset secrets from instance/ and derive Flask's own keys (after overrides)."""
    ensure_instance_folder(instance_path)
    if not config.get("RUNNER_AUTH_SECRET"):
        config["RUNNER_AUTH_SECRET"] = persistent_secret(
            instance_path, "runner_auth_secret", "RUNNER_AUTH_SECRET"
        )
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = persistent_secret(instance_path, "secret_key", "SECRET_KEY")
    _check_secret("RUNNER_AUTH_SECRET", config["RUNNER_AUTH_SECRET"])
    _check_secret("SECRET_KEY", config["SECRET_KEY"])
    config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(config["SQLALCHEMY_DATABASE_URI"])
    # Werkzeug enforces the body limit while parsing; api/errors.py renders its 413 as JSON.
    config["MAX_CONTENT_LENGTH"] = config["MAX_UPLOAD_BYTES"]
    # Metadata form fields may be up to 64 KiB of JSON; Flask's default is 500 KB.
    config.setdefault("MAX_FORM_MEMORY_SIZE", 1024 * 1024)
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    config["JSON_SORT_KEYS"] = False


def runner_backend(config: Mapping[str, Any]) -> str | None:
    """The backend new runs are sent to (API.md Part 2 § Runner backends).

    RUNNER_BACKEND when set (``none`` gives None: no runner is started and runs stay ``queued``
    until some runner reports; ``daytona`` is a Daytona sandbox per run, docs/daytona.md);
    otherwise ``jobs`` when DAYTONA_API_URL is set, else ``local``.
    """
    backend = config.get("RUNNER_BACKEND")
    if backend == "none":
        return None
    if backend:
        return str(backend)
    return "jobs" if config.get("DAYTONA_API_URL") else "local"
