"""Object storage: get_storage() picks the backend named by STORAGE_BACKEND."""

from __future__ import annotations

from flask import current_app

from designrun.storage.base import Storage


def get_storage() -> Storage:
    """The app's storage backend, built once per app and cached in its extensions."""
    cached = current_app.extensions.get("designrun.storage")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    config = current_app.config
    storage: Storage
    if config["STORAGE_BACKEND"] == "s3":
        from designrun.storage.s3 import S3Storage

        storage = S3Storage(
            config["S3_BUCKET"],
            config["S3_ENDPOINT_URL"],
            config["S3_REGION"],
            config.get("S3_ADDRESSING_STYLE", "auto"),
        )
    else:
        from designrun.storage.local import LocalStorage

        storage = LocalStorage(config["STORAGE_LOCAL_DIR"])
    current_app.extensions["designrun.storage"] = storage
    return storage
