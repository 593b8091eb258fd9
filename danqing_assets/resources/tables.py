"""Datasets stored as parquet parts plus one manifest per (asset, snapshot).

Parts are written under names unique to the run; a partition becomes visible only
when its manifest is written (one atomic put), and parts the previous manifest
listed that the new one does not are deleted afterwards. Readers go through the
manifest, so they see the old partition or the new one, never a mix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import polars as pl

from .storage import ObjectNotFound, ObjectStore, get_json, put_json, read_parquet


@dataclass(frozen=True)
class TableManifest:
    asset: str
    partition: str
    parts: tuple[str, ...]
    rows: int
    schema: dict[str, str]
    stats: dict = field(default_factory=dict)
    files: tuple[str, ...] = ()  # other objects the partition owns (e.g. WebDataset shards)

    @classmethod
    def from_dict(cls, data: dict) -> TableManifest:
        return cls(**{**data, "parts": tuple(data["parts"]), "files": tuple(data.get("files", ()))})

    @property
    def objects(self) -> tuple[str, ...]:
        return self.parts + self.files


def table_prefix(asset: str, partition: str) -> str:
    return f"datasets/{asset}/{partition}"


def manifest_key(asset: str, partition: str) -> str:
    return f"{table_prefix(asset, partition)}/_manifest.json"


def part_key(asset: str, partition: str, name: str) -> str:
    return f"{table_prefix(asset, partition)}/parts/{name}.parquet"


def file_key(asset: str, partition: str, name: str) -> str:
    return f"{table_prefix(asset, partition)}/files/{name}"


def commit_table(
    store: ObjectStore, manifest: TableManifest, *, may_be_in_use: Callable[[str], bool] | None = None
) -> list[str]:
    """Publish a partition: write its manifest, then delete objects only the old manifest used.

    With ``may_be_in_use`` (key -> True while a run that may still commit it could own it), the
    partition's unreferenced ``parts/`` and ``files/`` objects for which it says False -- what a
    killed or failed run left behind -- are deleted too. Without it orphans are left alone.
    """
    for key in manifest.objects:
        if not store.exists(key):
            raise FileNotFoundError(f"cannot commit {manifest.asset}/{manifest.partition}: {key} is missing")
    old = load_manifest(store, manifest.asset, manifest.partition)
    put_json(store, manifest_key(manifest.asset, manifest.partition), asdict(manifest))
    # A manifest may list objects of other partitions (the cumulative dedup index refers to earlier
    # snapshots' parts); only this partition's own objects are ever deleted here.
    own = table_prefix(manifest.asset, manifest.partition) + "/"
    stale = sorted(k for k in set(old.objects) - set(manifest.objects) if k.startswith(own)) if old else []
    if may_be_in_use is not None:
        listed = set(manifest.objects) | set(stale)
        orphans = [k for sub in ("parts/", "files/") for k in store.list(own + sub) if k not in listed]
        stale += [k for k in orphans if not may_be_in_use(k)]
    for key in stale:
        store.delete(key)
    return stale


def load_manifest(store: ObjectStore, asset: str, partition: str) -> TableManifest | None:
    try:
        return TableManifest.from_dict(get_json(store, manifest_key(asset, partition)))
    except ObjectNotFound:
        return None


def iter_parts(store: ObjectStore, manifest: TableManifest, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """The partition part by part: memory stays at one part, whatever the snapshot's size.

    ``columns``: only those are read (the others are never decoded).
    """
    for key in manifest.parts:
        yield read_parquet(store, key, columns=columns)


def read_table(store: ObjectStore, manifest: TableManifest, columns: list[str] | None = None) -> pl.DataFrame:
    """The whole partition (or its ``columns``) in memory: for small tables and tests; stages stream with
    :func:`iter_parts`."""
    frames = list(iter_parts(store, manifest, columns))
    if not frames:
        schema = {name: getattr(pl, dtype) for name, dtype in manifest.schema.items()}
        if columns is not None:  # an empty partition may record no schema at all
            schema = {name: schema.get(name, pl.Null) for name in columns}
        return pl.DataFrame(schema=schema)
    return pl.concat(frames, how="vertical")


def schema_names(schema: dict[str, pl.DataType]) -> dict[str, str]:
    return {name: str(dtype.base_type() if hasattr(dtype, "base_type") else dtype) for name, dtype in schema.items()}
