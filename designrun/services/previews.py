"""Which artifact a preview URL names (web/preview.py serves it and checks the capability)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from designrun.errors import NotFoundError
from designrun.extensions import db
from designrun.models import Artifact, Run


def artifact_path(artifact: Artifact) -> str:
    """The artifact's path inside its run's output (what relative references in it resolve to).

    The runner's ``metadata.path`` when it is a plain relative path, else the key's file name.
    """
    path = (artifact.metadata_ or {}).get("path")
    if isinstance(path, str) and path and not path.startswith("/") and ".." not in path:
        return path
    return artifact.storage_key.rsplit("/", 1)[-1]


def find_artifact(run_id: uuid.UUID, path: str) -> Artifact:
    """The run's newest artifact at ``path``; raises NotFoundError (no run, no such path).

    Only the run's own artifacts are candidates, so a preview never reaches another run's files.
    """
    if db.session.get(Run, run_id) is None:
        raise NotFoundError("no such preview")
    candidates = db.session.scalars(
        select(Artifact)
        .where(Artifact.run_id == run_id)
        .order_by(Artifact.created_at.desc(), Artifact.id.desc())
    )
    found = next((a for a in candidates if artifact_path(a) == path), None)
    if found is None:
        raise NotFoundError("no such preview")
    return found
