"""Objects in S3, Cloudflare R2, MinIO… through boto3 (credentials as boto3 reads them).

Errors of the store itself (unreachable, 5xx, access denied) become StorageUnavailable (503);
an error of the stream being saved (the client went away) is re-raised as it is. A failed
multipart upload is aborted by s3transfer, so nothing half-written is left at the key; one
left by a killed worker is aborted by the orphan sweep (``remove_partials``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO, cast

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from designrun.storage.base import (
    CHUNK_SIZE,
    ListedObject,
    ObjectInfo,
    ObjectTooLarge,
    StorageUnavailable,
)

# upload_fileobj streams a non-seekable body in parts of this size. s3transfer keeps up to
# max_in_memory_upload_chunks parts read ahead in memory (default 10, i.e. 80 MiB: a mid-sized
# upload whole); capped at max_concurrency, one upload holds about (4 + 1) x 8 MiB at most.
# boto3's TransferConfig does not take that argument, but passes the attribute on.
_TRANSFER = TransferConfig(multipart_chunksize=8 * CHUNK_SIZE, max_concurrency=4)
_TRANSFER.max_in_memory_upload_chunks = 4
_MISSING = {"NoSuchKey", "404", "NotFound"}


def _unavailable(exc: Exception) -> StorageUnavailable:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "error")
        return StorageUnavailable(f"object storage answered {code}")
    return StorageUnavailable(f"object storage unreachable ({type(exc).__name__})")


class S3Storage:
    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None,
        region: str | None,
        addressing_style: str = "auto",
    ) -> None:
        self.bucket = bucket
        config = Config(
            signature_version="s3v4",  # presigned URLs: R2 and MinIO accept only SigV4
            s3={"addressing_style": addressing_style},
            # A store that is down answers 503 within seconds, not after minutes of retries.
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    def save_stream(
        self, key: str, stream: BinaryIO, content_type: str | None, limit: int | None = None
    ) -> int:
        """Upload ``stream`` (in parts when large); return the number of bytes sent.

        Raises ObjectTooLarge past ``limit`` bytes (the upload is aborted: nothing stored),
        StorageUnavailable, or the stream's own error.
        """
        counted = _CountingReader(stream, limit)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.upload_fileobj(counted, self.bucket, key, ExtraArgs=extra, Config=_TRANSFER)
        except Exception as exc:
            if counted.error is not None:
                raise counted.error from None
            if isinstance(exc, (ClientError, BotoCoreError, S3UploadFailedError)):
                raise _unavailable(exc) from None
            raise
        return counted.count

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """The object's body (or a byte range of it) as a stream (FileNotFoundError if missing)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            params["Range"] = f"bytes={start}-{end}"
        try:
            return cast(BinaryIO, self.client.get_object(**params)["Body"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise FileNotFoundError(key) from exc
            raise _unavailable(exc) from None
        except BotoCoreError as exc:
            raise _unavailable(exc) from None

    def stat(self, key: str) -> ObjectInfo | None:
        """HEAD the object: its size, ETag and LastModified, or None when missing."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise _unavailable(exc) from None
        except BotoCoreError as exc:
            raise _unavailable(exc) from None
        etag = str(head.get("ETag") or "")
        if not etag.startswith('"'):
            etag = f'"{etag}"'
        return ObjectInfo(
            size=int(head["ContentLength"]), etag=etag, last_modified=head["LastModified"]
        )

    def size(self, key: str) -> int | None:
        """ContentLength of the object, or None when missing."""
        info = self.stat(key)
        return None if info is None else info.size

    def delete(self, key: str) -> None:
        """Delete one object."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc) from None

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``, a page (up to 1000 keys) at a time.

        Raises ValueError for an empty prefix, which would empty the whole bucket (the local
        backend refuses its root folder likewise), StorageUnavailable.
        """
        if not prefix:
            raise ValueError("refusing to delete an empty prefix (the whole bucket)")
        count = 0
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    answer = self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": keys}
                    )
                    if answer.get("Errors"):
                        raise StorageUnavailable(f"{len(answer['Errors'])} objects not deleted")
                    count += len(keys)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc) from None
        return count

    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[ListedObject]:
        """Objects under ``prefix`` in key order (S3 lists in UTF-8 binary order)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            params["StartAfter"] = start_after
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**params):
                for item in page.get("Contents", []):
                    yield ListedObject(key=item["Key"], last_modified=item["LastModified"])
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc) from None

    def remove_partials(self, older_than: datetime, prefix: str) -> int:
        """Abort multipart uploads under ``prefix`` begun before ``older_than``."""
        aborted = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < older_than:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc) from None
        return aborted

    def presign_put(
        self, key: str, content_type: str | None, size: int | None, expires_in: int
    ) -> tuple[str, dict[str, str]]:
        """A presigned PUT; Content-Type and Content-Length are signed when given (S3 then
        refuses a request with other values)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        headers: dict[str, str] = {}
        if content_type:
            params["ContentType"] = content_type
            headers["Content-Type"] = content_type
        if size is not None:
            params["ContentLength"] = size
            headers["Content-Length"] = str(size)
        url = self.client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
        )
        return str(url), headers

    def presign_get(self, key: str, file_name: str, expires_in: int) -> str:
        """A presigned GET that S3 answers as an attachment named ``file_name``."""
        url = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{file_name}"',
            },
            ExpiresIn=expires_in,
        )
        return str(url)


class _CountingReader:
    """File-like wrapper that counts the bytes read, enforces a limit and keeps the stream's
    own error (so that it is not mistaken for the store's)."""

    def __init__(self, stream: BinaryIO, limit: int | None) -> None:
        self._stream = stream
        self._limit = limit
        self.count = 0
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except Exception as exc:
            self.error = exc
            raise
        self.count += len(data)
        if self._limit is not None and self.count > self._limit:
            self.error = ObjectTooLarge(f"more than {self._limit} bytes")
            raise self.error
        return data
