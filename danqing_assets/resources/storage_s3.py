"""The S3 implementation of :class:`~danqing_assets.resources.storage.ObjectStore` (minio client).

Transient failures (connection refused/reset, timeouts, 5xx, SlowDown) are retried with
exponential backoff, bounded by ``retry_attempts`` and ``retry_max_s``; 4xx errors
(NoSuchKey, AccessDenied, ...) are never retried. The secret key is handed to the minio
client only: it is kept in no attribute of this class, no repr, no log, no exception.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from danqing_assets.resources.storage import (
    ObjectNotFound,
    ObjectStore,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
    _atomic_copy_to,
    validate_key,
    validate_prefix,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT_S3_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "ServiceNotReady"}
)
_AUTH_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"})
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})
_SPOOL_BYTES = 16 * 1024 * 1024


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the network or the server had a hiccup, not a 4xx answer."""
    if isinstance(exc, (urllib3.exceptions.SSLError, urllib3.exceptions.LocationValueError)):
        return False
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, http.client.HTTPException)):
        return True
    if isinstance(exc, ServerError):
        return exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, InvalidResponseError):
        code = getattr(exc, "_code", 0) or 0
        return code >= 500 or code == 429
    if isinstance(exc, S3Error):
        status = getattr(exc.response, "status", 0) or 0
        return exc.code in _TRANSIENT_S3_CODES or status >= 500 or status == 429
    return False


class S3ObjectStore(ObjectStore):
    """Objects are ``s3://bucket/prefix/key``; ``writer`` spools to a local temp file."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        prefix: str = "",
        access_key: str = "",
        secret_key: str = "",
        secure: bool = False,
        region: str = "us-east-1",
        create_bucket: bool = True,
        *,
        retry_attempts: int = 10,
        retry_max_s: float = 90.0,
        retry_initial_wait_s: float = 0.25,
        retry_max_wait_s: float = 8.0,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 300.0,
    ):
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.access_key = access_key
        self.secure = secure
        self.region = region
        self._create_bucket = create_bucket
        self._bucket_ready = False
        self._lock = threading.Lock()
        self._retry_attempts = max(1, retry_attempts)
        self._retry_max_s = retry_max_s
        self._retry_initial_wait_s = retry_initial_wait_s
        self._retry_max_wait_s = retry_max_wait_s
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            maxsize=16,
            retries=False,  # tenacity retries whole operations instead
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        self._client = Minio(
            endpoint=endpoint,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=secure,
            region=region,
            http_client=http,
        )

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    # --- plumbing ---------------------------------------------------------------------

    def _name(self, key: str) -> str:
        validate_key(key)
        name = f"{self.prefix}/{key}" if self.prefix else key
        if len(name.encode("utf-8")) > 1024:
            raise StorageError("object name (prefix + key) longer than 1024 bytes")
        return name

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "S3 %s at %s failed (attempt %d): %s: %s; retrying",
            getattr(state.fn, "__name__", "call"),
            self.endpoint,
            state.attempt_number,
            type(exc).__name__,
            str(exc)[:300],
        )

    def _call(self, fn: Callable[[], T], key: str | None = None) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self._retry_attempts) | stop_after_delay(self._retry_max_s),
            wait=wait_exponential_jitter(
                multiplier=self._retry_initial_wait_s, max=self._retry_max_wait_s, jitter=self._retry_initial_wait_s
            ),
            retry=retry_if_exception(is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(fn)
        except S3Error as e:
            if e.code in _MISSING_CODES and key is not None:
                raise ObjectNotFound(f"object not found: {self.uri(key)}") from None
            if e.code in _AUTH_CODES:
                raise StorageAuthError(
                    f"S3 at {self.endpoint} refused access ({e.code}) for access key "
                    f"{self.access_key!r} on bucket {self.bucket!r}: wrong access/secret key "
                    "or missing permission"
                ) from None
            raise StorageError(f"S3 request to {self.endpoint} failed: {e}") from None
        except Exception as e:
            if is_transient(e):
                raise StorageUnavailable(
                    f"S3 at {self.endpoint} unavailable after {self._retry_attempts} attempts "
                    f"or {self._retry_max_s:.0f} s: {type(e).__name__}: {str(e)[:300]}"
                ) from e
            raise

    def _ensure_bucket(self) -> None:
        if self._bucket_ready or not self._create_bucket:
            return
        with self._lock:
            if self._bucket_ready:
                return

            def ensure() -> None:
                if not self._client.bucket_exists(bucket_name=self.bucket):
                    try:
                        self._client.make_bucket(bucket_name=self.bucket)
                    except S3Error as e:
                        if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise

            self._call(ensure)
            self._bucket_ready = True

    # --- the interface ----------------------------------------------------------------

    def _put_stream(self, key: str, f: BinaryIO, length: int) -> None:
        name = self._name(key)
        self._ensure_bucket()

        def put() -> None:
            f.seek(0)
            self._client.put_object(bucket_name=self.bucket, object_name=name, data=f, length=length)

        self._call(put, key)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._put_stream(key, io.BytesIO(data), len(data))

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as f:
            self._put_stream(key, f, Path(path).stat().st_size)

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        self._name(key)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, prefix="danqing-s3-") as f:
            yield f  # type: ignore[misc]
            if f.closed:
                raise StorageError("the writer's file was closed inside the block; nothing uploaded")
            length = f.seek(0, io.SEEK_END)
            self._put_stream(key, f, length)  # type: ignore[arg-type]

    def get_bytes(self, key: str) -> bytes:
        name = self._name(key)

        def get() -> bytes:
            resp = self._client.get_object(bucket_name=self.bucket, object_name=name)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._call(get, key)

    def download_file(self, key: str, path: Path) -> None:
        name = self._name(key)

        def download() -> None:
            resp = self._client.get_object(bucket_name=self.bucket, object_name=name)
            try:
                _atomic_copy_to(resp, Path(path))  # type: ignore[arg-type]
            finally:
                resp.close()
                resp.release_conn()

        self._call(download, key)

    def open_read(self, key: str) -> BinaryIO:
        """Opening is retried; a failure in the middle of reading is not."""
        name = self._name(key)
        resp = self._call(lambda: self._client.get_object(bucket_name=self.bucket, object_name=name), key)
        return io.BufferedReader(_ResponseReader(resp), buffer_size=1024 * 1024)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        name = self._name(key)
        try:
            self._call(lambda: self._client.stat_object(bucket_name=self.bucket, object_name=name), key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""

        def listing() -> list[str]:
            try:
                objs = self._client.list_objects(bucket_name=self.bucket, prefix=base + prefix, recursive=True)
                names = [o.object_name for o in objs if o.object_name and not o.is_dir]
            except S3Error as e:
                if e.code == "NoSuchBucket":
                    return []
                raise
            return [n[len(base) :] for n in names if n.startswith(base) and not n.endswith("/")]

        return sorted(self._call(listing))

    def delete(self, key: str) -> None:
        name = self._name(key)

        def remove() -> None:
            try:
                self._client.remove_object(bucket_name=self.bucket, object_name=name)
            except S3Error as e:
                if e.code not in _MISSING_CODES:
                    raise

        self._call(remove)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for i in range(0, len(keys), 1000):
            batch = [DeleteObject(self._name(k)) for k in keys[i : i + 1000]]

            def remove_batch(batch: list[DeleteObject] = batch) -> None:
                errors = list(self._client.remove_objects(bucket_name=self.bucket, delete_object_list=batch))
                bad = [e for e in errors if e.code not in _MISSING_CODES]
                if bad:
                    raise StorageError(f"S3 delete failed for {len(bad)} objects, first: {bad[0]}")

            self._call(remove_batch)
        return len(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"


class _ResponseReader(io.RawIOBase):
    """A raw stream over a urllib3 response; closing it releases the connection."""

    def __init__(self, resp: urllib3.BaseHTTPResponse):
        self._resp = resp

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        return self._resp.readinto(b)

    def close(self) -> None:
        if not self.closed:
            try:
                self._resp.close()
                self._resp.release_conn()
            finally:
                super().close()
