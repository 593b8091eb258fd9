"""Byte-level fingerprints of committed partitions, for idempotence checks.

A re-run writes its parts under names carrying its own run id, so two equal
partitions differ in their manifests' part names and nothing else. The digest
replaces each listed object by the SHA-256 of its bytes (in manifest order) and
serialises the rest of the manifest canonically: two runs that produced the same
bytes give the same digest, and any changed byte, row, order, count or stat shows.
Timings (stats keys in :data:`VOLATILE_STATS`) are the one thing a re-run may change:
they are left out, and the release's own metadata must not carry them.
Point :func:`release_digest` at the ``release`` asset once it exists.
"""

import hashlib
import json
from dataclasses import asdict

from danqing_assets.resources.storage import ObjectStore
from danqing_assets.resources.tables import load_manifest

VOLATILE_STATS = frozenset({"seconds", "model_share_of_time"})


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in VOLATILE_STATS}
    return value


def partition_digest(store: ObjectStore, asset: str, partition: str) -> bytes:
    """Canonical JSON bytes of the committed partition, with objects named by their content."""
    manifest = load_manifest(store, asset, partition)
    if manifest is None:
        raise AssertionError(f"{asset}/{partition} has no committed manifest")
    record = asdict(manifest)
    record["stats"] = _without_timings(record["stats"])
    record["parts"] = [hashlib.sha256(store.get_bytes(k)).hexdigest() for k in manifest.parts]
    record["files"] = [hashlib.sha256(store.get_bytes(k)).hexdigest() for k in manifest.files]
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def release_digest(store: ObjectStore, partition: str, assets: list[str]) -> dict[str, bytes]:
    """The digests of ``assets`` (the release, or today the last stages) for one snapshot."""
    return {asset: partition_digest(store, asset, partition) for asset in assets}


def unreferenced_objects(store: ObjectStore) -> list[str]:
    """Objects under ``datasets/`` that no committed manifest lists (a killed run's leftovers).

    Also checks what a reader relies on: every listed object exists, and nothing that
    looks like a temp file is listed as an object."""
    keys = store.list("datasets/")
    assert not [k for k in keys if ".tmp-" in k], "temp files listed as objects"
    manifests = [k for k in keys if k.endswith("/_manifest.json")]
    referenced: set[str] = set()
    for key in manifests:
        _, asset, partition, _ = key.split("/")
        manifest = load_manifest(store, asset, partition)
        missing = [k for k in manifest.objects if not store.exists(k)]
        assert not missing, f"{key} lists missing objects {missing}"
        referenced.update(manifest.objects)
    return sorted(set(keys) - referenced - set(manifests))


RUN_BOUND_STATS = frozenset({"covers", "own_parts", "drops"})
"""dedup_index stats that name upstream versions and its own objects by run (a re-run is a new version)."""


def index_digest(store: ObjectStore, partition: str) -> bytes:
    """The cumulative dedup index by content: every index row in order, the drop table, the other stats."""
    import io

    from danqing_assets.resources.storage import read_parquet
    from danqing_assets.resources.tables import read_table

    manifest = load_manifest(store, "dedup_index", partition)
    if manifest is None:
        raise AssertionError(f"dedup_index/{partition} has no committed manifest")
    tables = []
    for frame in (read_table(store, manifest), read_parquet(store, manifest.stats["drops"])):
        buffer = io.BytesIO()
        frame.write_ipc(buffer)
        tables.append(hashlib.sha256(buffer.getvalue()).hexdigest())
    stats = {k: v for k, v in _without_timings(manifest.stats).items() if k not in RUN_BOUND_STATS}
    return json.dumps({"rows": manifest.rows, "tables": tables, "stats": stats}, sort_keys=True).encode()


def rows_digest(store: ObjectStore, asset: str, partition: str) -> bytes:
    """A partition by its rows alone, in a canonical order: for assets whose re-run carries earlier work over
    (``downloaded_images`` keeps its shards and final failures, so its parts and counts are arranged anew)."""
    import io

    from danqing_assets.resources.tables import read_table

    manifest = load_manifest(store, asset, partition)
    if manifest is None:
        raise AssertionError(f"{asset}/{partition} has no committed manifest")
    frame = read_table(store, manifest)
    buffer = io.BytesIO()
    frame.sort(frame.columns).write_ipc(buffer)
    return json.dumps({"rows": manifest.rows, "table": hashlib.sha256(buffer.getvalue()).hexdigest()}).encode()
