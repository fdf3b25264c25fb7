"""Objects in S3, Cloudflare R2, MinIO… through boto3 (credentials as boto3 reads them)."""

from __future__ import annotations

from typing import Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from designrun.storage.base import CHUNK_SIZE

# upload_fileobj streams a non-seekable body in parts of this size. s3transfer keeps up to
# max_in_memory_upload_chunks parts read ahead in memory (default 10, i.e. 80 MiB: a mid-sized
# upload whole); capped at max_concurrency, one upload holds about (4 + 1) x 8 MiB at most.
# boto3's TransferConfig does not take that argument, but passes the attribute on.
_TRANSFER = TransferConfig(multipart_chunksize=8 * CHUNK_SIZE, max_concurrency=4)
_TRANSFER.max_in_memory_upload_chunks = 4


class S3Storage:
    def __init__(self, bucket: str, endpoint_url: str | None, region: str | None) -> None:
        self.bucket = bucket
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def save_stream(self, key: str, stream: BinaryIO, content_type: str | None) -> int:
        """Upload ``stream`` in parts; return the number of bytes sent."""
        counted = _CountingReader(stream)
        extra = {"ContentType": content_type} if content_type else {}
        self.client.upload_fileobj(counted, self.bucket, key, ExtraArgs=extra, Config=_TRANSFER)
        return counted.count

    def open(self, key: str) -> BinaryIO:
        """The object's body as a stream (FileNotFoundError when missing)."""
        try:
            return cast(BinaryIO, self.client.get_object(Bucket=self.bucket, Key=key)["Body"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise FileNotFoundError(key) from exc
            raise

    def size(self, key: str) -> int | None:
        """ContentLength of the object, or None when missing."""
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise

    def delete(self, key: str) -> None:
        """Delete one object."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``, a page (up to 1000 keys) at a time.

        Raises ValueError for an empty prefix, which would empty the whole bucket (the local
        backend refuses its root folder likewise).
        """
        if not prefix:
            raise ValueError("refusing to delete an empty prefix (the whole bucket)")
        count = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                count += len(keys)
        return count


class _CountingReader:
    """File-like wrapper that counts the bytes read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data
