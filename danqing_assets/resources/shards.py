"""WebDataset tar shards in the object store.

A shard is written to a local temp file and uploaded in one put (atomic on S3,
temp-then-rename locally), so a reader never sees half a shard. Members are
``<key>.jpg`` and ``<key>.json``, as the ``webdataset`` library expects; the
modification time is fixed so the same images give byte-identical shards.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

import webdataset as wds

from .storage import ObjectStore


class ShardWriter:
    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store, self.key = store, key
        self._tmp = tempfile.NamedTemporaryFile(prefix="danqing-shard-", suffix=".tar", delete=False)
        self._writer = wds.TarWriter(self._tmp, mtime=0, user="danqing", group="danqing")
        self.count = 0

    def add(self, key: str, image: bytes, meta: dict, image_ext: str = "jpg", extra: dict[str, bytes] | None = None) -> str:
        """Add one sample (``extra``: more members by extension, e.g. ``{"txt": caption}``); returns the image member's name."""
        sample = {"__key__": key, image_ext: image, "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()}
        self._writer.write({**sample, **(extra or {})})
        self.count += 1
        return f"{key}.{image_ext}"

    def commit(self) -> str:
        self._writer.close()
        self._tmp.close()
        try:
            self.store.put_file(self.key, Path(self._tmp.name))
        finally:
            Path(self._tmp.name).unlink(missing_ok=True)
        return self.key

    def discard(self) -> None:
        self._writer.close()
        self._tmp.close()
        Path(self._tmp.name).unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.discard()


def read_members(store: ObjectStore, key: str, names: set[str] | None = None) -> dict[str, bytes]:
    """Members of a shard by name (all of them when ``names`` is None)."""
    local = store.local_path(key)
    with tempfile.TemporaryDirectory() as tmp:
        if local is None:
            local = Path(tmp) / "shard.tar"
            store.download_file(key, local)
        with tarfile.open(local) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers()
                    if m.isfile() and (names is None or m.name in names)}
