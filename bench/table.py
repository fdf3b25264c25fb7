"""What the benchmarks collect and print: the options and rows of one run (``Bench``, ``Row``)
and the result table (shared by ingest.py and reads.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset import Database
from harness import clean_env


@dataclass
class Row:
    """One line of the result table."""

    check: str
    designrun: str
    reference: str
    ratio: str
    target: str
    verdict: str  # PASS, FAIL or info
    data: dict[str, Any] = field(default_factory=dict)
    lost_duplicated: str = ""


@dataclass
class Bench:
    """Options and the rows collected so far."""

    args: argparse.Namespace
    workdir: Path
    rows: list[Row] = field(default_factory=list)
    profiles: list[tuple[str, str]] = field(default_factory=list)
    busy_before: float = 0.0

    @property
    def secret(self) -> str:
        return "bench-runner-secret-" + "0" * 24

    def env(self, db: Database, name: str) -> dict[str, str]:
        instance = self.workdir / f"instance-{name}"
        instance.mkdir(exist_ok=True)
        return clean_env(
            DATABASE_URL=db.url,
            DESIGNRUN_INSTANCE_PATH=str(instance),
            RUNNER_AUTH_SECRET=self.secret,
            SECRET_KEY="bench-secret-key-" + "0" * 24,
            # The bench's runs are written to by the bench itself: start no runner for them.
            RUNNER_BACKEND="none",
        )


def print_table(rows: list[Row]) -> None:
    headers = (
        "check",
        "designrun",
        "reference (ceiling / 1e3)",
        "ratio",
        "lost/dup",
        "target",
        "result",
    )
    cells = [headers] + [
        (r.check, r.designrun, r.reference, r.ratio, r.lost_duplicated, r.target, r.verdict)
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    for i, line in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
