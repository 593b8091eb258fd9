"""Datasets stored as parquet parts plus one manifest per (asset, snapshot).

Parts are written under names unique to the run; a partition becomes visible only
when its manifest is written (one atomic put), and parts the previous manifest
listed that the new one does not are deleted afterwards. Readers go through the
manifest, so they see the old partition or the new one, never a mix.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def commit_table(store: ObjectStore, manifest: TableManifest) -> list[str]:
    """Publish a partition: write its manifest, then delete objects only the old manifest used."""
    for key in manifest.objects:
        if not store.exists(key):
            raise FileNotFoundError(f"cannot commit {manifest.asset}/{manifest.partition}: {key} is missing")
    old = load_manifest(store, manifest.asset, manifest.partition)
    put_json(store, manifest_key(manifest.asset, manifest.partition), asdict(manifest))
    stale = sorted(set(old.objects) - set(manifest.objects)) if old else []
    for key in stale:
        store.delete(key)
    return stale


def load_manifest(store: ObjectStore, asset: str, partition: str) -> TableManifest | None:
    try:
        return TableManifest.from_dict(get_json(store, manifest_key(asset, partition)))
    except ObjectNotFound:
        return None


def iter_parts(store: ObjectStore, manifest: TableManifest) -> Iterator[pl.DataFrame]:
    """The partition part by part: memory stays at one part, whatever the snapshot's size."""
    for key in manifest.parts:
        yield read_parquet(store, key)


def read_table(store: ObjectStore, manifest: TableManifest) -> pl.DataFrame:
    frames = list(iter_parts(store, manifest))
    if not frames:
        return pl.DataFrame(schema={name: getattr(pl, dtype) for name, dtype in manifest.schema.items()})
    return pl.concat(frames, how="vertical")


def schema_names(schema: dict[str, pl.DataType]) -> dict[str, str]:
    return {name: str(dtype.base_type() if hasattr(dtype, "base_type") else dtype) for name, dtype in schema.items()}
