"""How a run's Daytona sandbox is made and found: labels, allow-list, spec, runner command line.

Pure functions of the configuration (no database, no network), shared by the launch and
watchdog (triggers/sandboxes.py) and the orphan sweep (triggers/sandbox_orphans.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from designrun.triggers.daytona_sdk import SandboxSpec

BACKEND = "daytona"
LABEL_RUN = "designrun.run_id"
LABEL_INSTANCE = "designrun.instance"


def instance_label(config: Mapping[str, Any]) -> str:
    """This installation's label value: derived from RUNNER_AUTH_SECRET, the same on every host.

    Two designrun installations sharing one Daytona organisation never clean up each other's
    sandboxes. The value is a hash; nothing of the secret can be recovered from it.
    """
    secret = str(config["RUNNER_AUTH_SECRET"]).encode()
    return hashlib.sha256(b"designrun-instance:" + secret).hexdigest()[:16]


def run_labels(config: Mapping[str, Any], run_id: uuid.UUID) -> dict[str, str]:
    """The labels a run's sandbox carries (and is found by)."""
    return {LABEL_RUN: str(run_id), LABEL_INSTANCE: instance_label(config)}


def allow_lists(config: Mapping[str, Any], callback_url: str) -> tuple[str | None, str | None]:
    """(domain allow-list, CIDR allow-list) for a sandbox: the callback host plus the extras.

    DAYTONA_NETWORK_ALLOW adds comma-separated domains or CIDRs; ``*`` sets no allow-list at
    all (the organisation's default network policy applies).
    """
    extra = [item.strip() for item in (config.get("DAYTONA_NETWORK_ALLOW") or "").split(",")]
    if "*" in extra:
        return None, None
    domains: list[str] = []
    networks: list[str] = []
    for item in [urlsplit(callback_url).hostname or "", *extra]:
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            domains.append(item.lower())
    return (",".join(dict.fromkeys(domains)) or None, ",".join(dict.fromkeys(networks)) or None)


def sandbox_spec(config: Mapping[str, Any], run_id: uuid.UUID, callback_url: str) -> SandboxSpec:
    """How the run's sandbox is created (docs/daytona.md § Settings)."""
    domains, networks = allow_lists(config, callback_url)
    return SandboxSpec(
        labels=run_labels(config, run_id),
        snapshot=config.get("DAYTONA_SNAPSHOT"),
        image=None if config.get("DAYTONA_SNAPSHOT") else config.get("DAYTONA_IMAGE"),
        cpu=config.get("DAYTONA_CPU"),
        memory=config.get("DAYTONA_MEMORY"),
        disk=config.get("DAYTONA_DISK"),
        auto_stop_minutes=config.get("DAYTONA_AUTO_STOP_MINUTES"),
        auto_delete_minutes=config.get("DAYTONA_AUTO_DELETE_MINUTES"),
        domain_allow_list=domains,
        network_allow_list=networks,
    )


def runner_argv(config: Mapping[str, Any], job_path: str) -> list[str]:
    """``designrun-runner --job FILE [-- agent …]``: no secret on the command line."""
    argv = ["designrun-runner", "--job", job_path, "--heartbeat", "10"]
    agent = config.get("DAYTONA_AGENT_COMMAND")
    return [*argv, "--", *shlex.split(agent)] if agent else argv


def session_name(run_id: uuid.UUID) -> str:
    """The Daytona session the run's runner command is started in (one per run)."""
    return f"designrun-{run_id}"
