"""The object store: one interface, a local-directory and an S3 implementation.

Keys are ``/``-separated relative strings (``"warc/CC-MAIN-2024-10/part-0.parquet"``).
They are validated by :func:`validate_key`; build segments from untrusted text (URLs,
hosts) with :func:`safe_key_segment`. ``list(prefix)`` uses S3 semantics: a *string*
prefix, so ``"runs/1"`` also matches ``"runs/10/x"``; end it with ``/`` to mean a folder.
Every write is atomic: readers see the old object or the whole new one, never a part.
``delete`` of a missing key is not an error (as on S3).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import dagster as dg
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:
    import polars as pl

    from danqing_assets.resources.storage_s3 import S3ObjectStore
    from danqing_assets.settings import Settings

MAX_KEY_BYTES = 1024  # the S3 limit for a whole object name
MAX_SEGMENT_BYTES = 255  # NAME_MAX of common file systems
_TEMP_NAME = re.compile(r"^\..*\.tmp-[0-9a-f]{32}$", re.DOTALL)
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_CHUNK = 1024 * 1024


class StorageError(Exception):
    """Base class of the object store's errors."""


class ObjectNotFound(StorageError, KeyError):
    """The key names no object."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "object not found"


class InvalidKey(StorageError, ValueError):
    """The key (or prefix) is not a safe relative object key."""


class StorageAuthError(StorageError, PermissionError):
    """The server refused the credentials or the permission."""


class StorageUnavailable(StorageError, ConnectionError):
    """The server stayed unreachable (or kept failing) for the whole retry budget."""


def _check_segment_chars(seg: str, what: str) -> None:
    if "\\" in seg:
        raise InvalidKey(f"{what} contains a backslash")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in seg):
        raise InvalidKey(f"{what} contains control characters or lone surrogates")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`InvalidKey`."""
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey("empty key")
    _check_segment_chars(key, "key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise InvalidKey(f"key must be relative, got {key[:80]!r}")
    for seg in key.split("/"):
        if seg in ("", ".", ".."):
            raise InvalidKey(f"key has an empty, '.' or '..' segment: {key[:200]!r}")
        if len(seg.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidKey(f"key segment longer than {MAX_SEGMENT_BYTES} bytes")
        if _TEMP_NAME.match(seg):
            raise InvalidKey(f"key segment looks like a temp file: {seg[:80]!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A list/delete prefix: ``""``, a key, a key ending in ``/`` or a key whose last
    segment is partial (``"a/b"`` matches ``"a/bc"``)."""
    if not isinstance(prefix, str):
        raise InvalidKey(f"prefix must be a str, not {type(prefix).__name__}")
    if not prefix:
        return prefix
    if prefix.endswith("/"):
        validate_key(prefix[:-1])
        return prefix
    if prefix.startswith("/"):
        raise InvalidKey(f"prefix must be relative, got {prefix[:80]!r}")
    head, _, last = prefix.rpartition("/")
    if head:
        validate_key(head)
    _check_segment_chars(last, "prefix")
    if len(prefix.encode("utf-8")) > MAX_KEY_BYTES or len(last.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise InvalidKey("prefix too long")
    return prefix


def safe_key_segment(text: str | bytes, max_len: int = 128) -> str:
    """Turn arbitrary text (a URL, a host, even with lone surrogates) into one valid
    segment. Bytes outside ``[A-Za-z0-9._-]`` are percent-encoded (injective); a result
    longer than ``max_len`` is cut and gets ``~`` plus a SHA-256 prefix of the input."""
    if max_len < 40:
        raise ValueError("max_len must be at least 40")
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    out = "".join(chr(b) if chr(b) in _SAFE_CHARS else f"%{b:02X}" for b in raw)
    if out.startswith("."):  # no hidden names, no '.' / '..', no temp-name look-alikes
        out = "%2E" + out[1:]
    if not out:
        out = "%"  # the encoding never yields a bare '%'
    if len(out) > max_len:
        cut = out[: max_len - 33]
        if "%" in cut[-2:]:  # do not split an escape
            cut = cut[: cut.rindex("%")]
        out = f"{cut}~{hashlib.sha256(raw).hexdigest()[:32]}"
    return out


def join_key(*parts: str) -> str:
    """Join already-safe segments/keys with ``/`` and validate the result."""
    return validate_key("/".join(p.strip("/") for p in parts if p))


class ObjectStore(ABC):
    """Keys are ``/``-separated relative strings; see the module doc."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def download_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A streaming reader; the caller closes it."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys starting with ``prefix`` (string prefix), recursive, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key ``list(prefix)`` returns; the count deleted."""

    @abstractmethod
    def uri(self, key: str) -> str: ...

    def local_path(self, key: str) -> Path | None:
        """A path to read the object in place (local store only), else ``None``."""
        return None

    @abstractmethod
    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """Yield a binary file; the object appears only if the block exits cleanly.
        Do not close the yielded file yourself."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalObjectStore(ObjectStore):
    """Objects are files under ``root``; writes go to ``.<name>.tmp-<uuid>`` + ``os.replace``."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = self.root.joinpath(*key.split("/"))
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKey(f"key escapes the store root: {key[:200]!r}")
        return path

    def _not_found(self, key: str) -> ObjectNotFound:
        return ObjectNotFound(f"object not found: {self.uri(key)}")

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        for attempt in range(3):  # a concurrent delete_prefix may prune the fresh folder
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name[:100]}.tmp-{uuid.uuid4().hex}")
            try:
                f = open(tmp, "xb")
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        try:
            yield f
            if f.closed:
                with open(tmp, "rb+") as g:
                    os.fsync(g.fileno())
            else:
                f.flush()
                os.fsync(f.fileno())
                f.close()
            if not path.parent.resolve().is_relative_to(self.root):
                raise InvalidKey(f"key escapes the store root: {key[:200]!r}")
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as f:
            f.write(data)

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as src, self.writer(key) as f:
            shutil.copyfileobj(src, f, _CHUNK)

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def download_file(self, key: str, path: Path) -> None:
        path = Path(path)
        with self.open_read(key) as src:
            _atomic_copy_to(src, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise self._not_found(key)
        return path

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        head, _, partial = prefix.rpartition("/")
        start = self._path(head) if head else self.root
        if not start.is_dir():
            return []
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            if dirpath == str(start) and partial:
                dirnames[:] = [d for d in dirnames if d.startswith(partial)]
            for name in filenames:
                if not _TEMP_NAME.match(name) and (base + name).startswith(prefix):
                    out.append(base + name)
        return sorted(out)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        head = prefix.rpartition("/")[0]
        start = self._path(head) if head else self.root
        for dirpath, _dirs, _files in sorted(os.walk(start), key=lambda t: -len(t[0])):
            if Path(dirpath) != self.root:
                try:
                    os.rmdir(dirpath)  # only succeeds on empty folders
                except OSError:
                    pass
        return len(keys)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


def _atomic_copy_to(src: BinaryIO, path: Path) -> None:
    """Stream ``src`` to ``path`` via a temp file in the same folder + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(src, f, _CHUNK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- helpers used by assets ---------------------------------------------------------


def write_parquet(store: ObjectStore, key: str, df: pl.DataFrame) -> None:
    """Write ``df`` as zstd Parquet, atomically."""
    validate_key(key)
    with tempfile.TemporaryDirectory(prefix="danqing-pq-") as d:
        tmp = Path(d) / "data.parquet"
        df.write_parquet(tmp, compression="zstd")
        store.put_file(key, tmp)


def read_parquet(store: ObjectStore, key: str, columns: list[str] | None = None) -> pl.DataFrame:
    """The object as a frame; ``columns``: only those (the others are never decoded)."""
    import polars as pl

    path = store.local_path(key)
    if path is not None:
        return pl.read_parquet(path, columns=columns)
    with tempfile.TemporaryDirectory(prefix="danqing-pq-") as d:
        tmp = Path(d) / "data.parquet"
        store.download_file(key, tmp)
        return pl.read_parquet(tmp, columns=columns)


def put_json(store: ObjectStore, key: str, obj: Any) -> None:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=1)
    store.put_bytes(key, text.encode("utf-8"))


def get_json(store: ObjectStore, key: str) -> Any:
    return json.loads(store.get_bytes(key).decode("utf-8"))


# --- the Dagster resource -------------------------------------------------------------


def _plain(value: str) -> str:
    return (value.get_value() or "") if isinstance(value, dg.EnvVar) else value


class StorageResource(dg.ConfigurableResource):
    """Where assets keep their objects. Build it with :meth:`from_settings`.

    The secret key is passed as ``EnvVar("DANQING_S3_SECRET_KEY")`` when it comes from
    the environment, so Dagster shows only the variable's name; a literal secret (tests)
    would be visible in the Dagster UI's resource config, so avoid that in deployments.
    """

    kind: str = Field(default="local", description='"local" or "s3"')
    root: str = Field(default="data/store", description="Local store root (kind=local).")
    endpoint: str = "127.0.0.1:9000"
    bucket: str = "danqing"
    prefix: str = ""
    access_key: str = ""
    secret_key: str = Field(default="", repr=False, description="Prefer EnvVar(...).")
    secure: bool = False
    region: str = "us-east-1"

    _store: ObjectStore | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> StorageResource:
        if settings is None:
            from danqing_assets.settings import get_settings

            settings = get_settings()
        env_secret = os.environ.get("DANQING_S3_SECRET_KEY")
        secret: str = settings.s3_secret_key.get_secret_value()
        if secret and env_secret == secret:
            secret = dg.EnvVar("DANQING_S3_SECRET_KEY")
        return cls(
            kind=settings.storage_kind,
            root=str(settings.resolved_storage_root),
            endpoint=settings.s3_endpoint,
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            access_key=settings.s3_access_key,
            secret_key=secret,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )

    def __repr__(self) -> str:
        where = self.root if self.kind == "local" else f"{self.endpoint}/{self.bucket}/{self.prefix}"
        return f"StorageResource(kind={self.kind!r}, at={where!r})"

    def store(self) -> ObjectStore:
        if self._store is None:
            if self.kind == "local":
                self._store = LocalObjectStore(Path(self.root))
            elif self.kind == "s3":
                from danqing_assets.resources.storage_s3 import S3ObjectStore

                self._store = S3ObjectStore(
                    endpoint=self.endpoint,
                    bucket=self.bucket,
                    prefix=self.prefix,
                    access_key=_plain(self.access_key),
                    secret_key=_plain(self.secret_key),
                    secure=self.secure,
                    region=self.region,
                )
            else:
                raise ValueError(f"unknown storage kind {self.kind!r} (use 'local' or 's3')")
        return self._store


def __getattr__(name: str) -> Any:  # lazy re-export without a circular import
    if name == "S3ObjectStore":
        from danqing_assets.resources.storage_s3 import S3ObjectStore

        return S3ObjectStore
    raise AttributeError(name)


__all__ = [
    "InvalidKey",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "StorageAuthError",
    "StorageError",
    "StorageResource",
    "StorageUnavailable",
    "get_json",
    "join_key",
    "put_json",
    "read_parquet",
    "safe_key_segment",
    "validate_key",
    "validate_prefix",
    "write_parquet",
]
