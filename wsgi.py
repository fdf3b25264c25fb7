"""The WSGI entry point: ``gunicorn wsgi:app`` (settings in gunicorn.conf.py).

Imported in each worker after the fork (no preload), so the trigger dispatcher's threads start
in the process that serves requests.
"""

import sys

from dotenv import load_dotenv

from designrun import create_app, observability
from designrun.config import ConfigError

load_dotenv()
observability.configure_logging()  # LOG_FORMAT; every line carries its request id

try:
    app = create_app()
except ConfigError as exc:
    print(exc, file=sys.stderr)  # noqa: T201 - the one line the operator needs
    # 4 is gunicorn's APP_LOAD_ERROR: the arbiter halts instead of respawning the worker.
    sys.exit(4)

import os  # noqa: E402

from designrun import background  # noqa: E402

# gunicorn.conf.py's when_ready puts the bound address here: the local runner calls back to it.
background.start(app, os.environ.get("DESIGNRUN_BIND_ORIGIN"))
