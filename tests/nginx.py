"""A real nginx (Debian's package) on a free loopback port, configured with deploy/nginx.conf.

The test's nginx has its own prefix, configuration, pid file, logs and temp folders under a
temporary folder: the system's nginx (if any) is never touched. Only the lines of
deploy/nginx.conf marked ``# test:`` are replaced (the upstream servers, the listen address
and the access log path), so what is tested is the documented configuration.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.servers import HOST, REPO, free_port

NGINX_CONF = REPO / "deploy" / "nginx.conf"


def nginx_binary() -> str | None:
    """The nginx executable, or None when it is not installed (`make test` installs it)."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def render_site(upstreams: list[str], port: int, access_log: Path) -> str:
    """deploy/nginx.conf with the ``# test:`` lines pointed at loopback addresses."""
    lines: list[str] = []
    seen = {"upstream": 0, "listen": 0, "access_log": 0}
    for line in NGINX_CONF.read_text().splitlines():
        marker = line.rpartition("# test: ")[2].strip() if "# test: " in line else None
        if marker == "upstream":
            if seen["upstream"] == 0:
                lines.extend(f"    server {u} max_fails=1 fail_timeout=10s;" for u in upstreams)
            seen["upstream"] += 1
        elif marker == "listen":
            lines.append(f"    listen {HOST}:{port};")
            seen["listen"] += 1
        elif marker == "access_log":
            lines.append(f"    access_log {access_log} designrun;")
            seen["access_log"] += 1
        else:
            lines.append(line)
    assert all(seen.values()), f"deploy/nginx.conf lost a '# test:' marker: {seen}"
    return "\n".join(lines) + "\n"


class Nginx:
    """``nginx -p <prefix> -c <conf> -g 'daemon off;'`` in front of ``upstreams``."""

    def __init__(self, upstreams: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.prefix = workdir / "nginx"
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.access_log = self.prefix / "access.log"
        self.error_log = self.prefix / "error.log"
        (self.prefix / "designrun.conf").write_text(
            render_site(upstreams, self.port, self.access_log)
        )
        temp = "\n".join(
            f"    {name}_temp_path {self.prefix / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root, nginx's workers would switch to "nobody", who cannot use this folder.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(
            f"{user}\nworker_processes 1;\npid {self.prefix / 'nginx.pid'};\n"
            f"error_log {self.error_log} info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n{temp}\n    include {self.prefix / 'designrun.conf'};\n}}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        binary = nginx_binary()
        assert binary is not None, "nginx is not installed (make test installs it)"
        check = subprocess.run(
            [binary, "-t", "-p", str(self.prefix), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        with (self.prefix / "stderr.log").open("wb") as stderr:
            self.process = subprocess.Popen(
                [binary, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.error_log.read_text(errors="replace")
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not start listening")

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
