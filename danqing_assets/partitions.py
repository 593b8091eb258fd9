"""Every dataset asset is partitioned by Common Crawl snapshot (crawl id)."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from .curation.crawl_ids import validate_crawl_id

cc_snapshots = dg.DynamicPartitionsDefinition(name="cc_snapshots")


def register_snapshots(instance: dg.DagsterInstance, crawl_ids: Iterable[str]) -> list[str]:
    """Add crawl ids as ``cc_snapshots`` partitions (validated; existing ones are left alone)."""
    ids = [validate_crawl_id(c) for c in crawl_ids]
    existing = set(instance.get_dynamic_partitions(cc_snapshots.name))
    new = [c for c in dict.fromkeys(ids) if c not in existing]
    if new:
        instance.add_dynamic_partitions(cc_snapshots.name, new)
    return new
