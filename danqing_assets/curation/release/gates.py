"""Release gates: checks a release must pass before it is published.

Each gate is a plain function returning a :class:`GateResult`; the ``release`` asset runs them as
blocking asset checks, so a failing gate keeps the release out of the published manifest and the
UI shows why. Inputs are the release's metadata frame, what :func:`inspect_shards` saw in its tar
shards, the other snapshots' released rows and the takedown list.
"""

from __future__ import annotations

import io
import tarfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from PIL import Image

from .schema import IMAGE_EXT, RELEASE_SCHEMA
from .takedowns import Takedowns, domain_blocked, host_of

MAX_LISTED = 20  # offending items named in a gate's result; the count is always complete


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    description: str
    failures: int = 0
    examples: tuple[str, ...] = ()


@dataclass
class ShardInspection:
    """What the tar shards hold: member extensions per sample key per shard, and images that failed to decode."""

    members: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    undecodable: list[tuple[str, str, str]] = field(default_factory=list)  # (shard, member, error)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (shard, error)


def _decode_error(data: bytes) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        return None
    except Exception as exc:  # noqa: BLE001 — any failure to decode is the finding
        return f"{type(exc).__name__}: {exc}"[:200]


def inspect_shards(shards: Iterable[tuple[str, Path]]) -> ShardInspection:
    """Read every member of every ``(name, local tar path)`` once, decoding the images as they stream by."""
    seen = ShardInspection()
    for name, path in shards:
        samples: dict[str, set[str]] = defaultdict(set)
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.partition(".")
                    samples[key].add(ext)
                    if ext == IMAGE_EXT and (error := _decode_error(tar.extractfile(member).read())):
                        seen.undecodable.append((name, member.name, error))
        except (tarfile.TarError, OSError, EOFError) as exc:
            seen.unreadable.append((name, f"{type(exc).__name__}: {exc}"))
        seen.members[name] = dict(samples)
    return seen


def _result(name: str, bad: list[str], ok: str, failed: str) -> GateResult:
    if not bad:
        return GateResult(name, True, ok)
    return GateResult(name, False, failed.format(n=len(bad)), len(bad), tuple(bad[:MAX_LISTED]))


def schema_as_documented(frame: pl.DataFrame) -> GateResult:
    expected = {k: str(v) for k, v in RELEASE_SCHEMA.items()}
    actual = {k: str(v) for k, v in frame.schema.items()}
    bad = [f"{k}: expected {expected.get(k, 'absent')}, found {actual.get(k, 'absent')}"
           for k in sorted(set(expected) | set(actual)) if expected.get(k) != actual.get(k)]
    return _result("schema_as_documented", bad, f"{len(expected)} columns as documented",
                   "{n} columns differ from the documented schema")


def uids_unique(frame: pl.DataFrame, earlier: pl.DataFrame) -> GateResult:
    """No uid twice in this release, nor in an earlier snapshot's release (``earlier``: uid, snapshot)."""
    counts = Counter(frame["uid"].to_list())
    bad = [f"{uid} ×{n} in this snapshot" for uid, n in counts.items() if n > 1]
    clash = earlier.filter(pl.col("uid").is_in(list(counts)))
    bad += [f"{uid} also in {snapshot}" for uid, snapshot in clash.select("uid", "snapshot").iter_rows()]
    return _result("uids_unique", sorted(bad), f"{frame.height:,} uids, each once in this snapshot and in no earlier release",
                   "{n} uids are not unique across the release")


def tar_members_match_rows(frame: pl.DataFrame, seen: ShardInspection) -> GateResult:
    """Every row has its image and json in the shard it names; no shard holds a sample without a row."""
    bad = [f"{shard}: unreadable ({error})" for shard, error in seen.unreadable]
    expected: dict[str, set[str]] = defaultdict(set)
    for uid, shard in frame.select("uid", "shard").iter_rows():
        expected[shard].add(uid)
    for shard in sorted(set(expected) | set(seen.members)):
        present = seen.members.get(shard, {})
        for uid in sorted(expected[shard]):
            missing = {IMAGE_EXT, "json"} - present.get(uid, set())
            bad += [f"{shard}: {uid}.{ext} missing" for ext in sorted(missing)]
        bad += [f"{shard}: {key} has no metadata row" for key in sorted(set(present) - expected[shard])]
    members = sum(len(v) for s in seen.members.values() for v in s.values())
    return _result("tar_members_match_rows", bad, f"{frame.height:,} rows, {members:,} tar members, all matched",
                   "{n} mismatches between tar members and metadata rows")


def images_decode(seen: ShardInspection) -> GateResult:
    bad = [f"{shard}: {member}: {error}" for shard, member, error in seen.undecodable]
    return _result("images_decode", bad, "every released image decodes", "{n} released images do not decode")


def no_blocklisted_domain(frame: pl.DataFrame, takedowns: Takedowns) -> GateResult:
    bad = [f"{uid}: {url} (page {page})" for uid, url, page in frame.select("uid", "url", "page_url").iter_rows()
           if domain_blocked(host_of(url), takedowns.domains) or domain_blocked(host_of(page), takedowns.domains)]
    return _result("no_blocklisted_domain", bad, f"no image or page from the {len(takedowns.domains)} blocked domains",
                   "{n} pairs come from blocked domains")


def no_cross_snapshot_duplicates(frame: pl.DataFrame, earlier: pl.DataFrame) -> GateResult:
    """No released image (sha256) also released by an earlier snapshot (``earlier``: sha256, snapshot)."""
    clash = frame.select("uid", "sha256").join(earlier.select("sha256", "snapshot"), on="sha256")
    bad = [f"{uid}: image {sha[:12]}… also in {snapshot}" for uid, sha, snapshot in clash.iter_rows()]
    return _result("no_cross_snapshot_duplicates", sorted(bad), "no image of this snapshot is released by an earlier one",
                   "{n} images are released by more than one snapshot")


GATES: dict[str, str] = {
    "schema_as_documented": "The metadata has exactly the documented columns and types.",
    "uids_unique": "Every uid appears once in this snapshot and in no earlier snapshot's release.",
    "tar_members_match_rows": "Tar members and metadata rows correspond one to one (image + json per row).",
    "images_decode": "Every released image decodes.",
    "no_blocklisted_domain": "No image or page URL is on a blocked domain of the takedown list.",
    "no_cross_snapshot_duplicates": "No image of this snapshot is released by an earlier snapshot.",
}


def run_gates(frame: pl.DataFrame, seen: ShardInspection, earlier: pl.DataFrame, takedowns: Takedowns) -> list[GateResult]:
    """All gates, in :data:`GATES` order. ``earlier``: uid, sha256, snapshot of the earlier snapshots' releases
    (earliest wins; ``release_manifest`` checks the published union as a whole)."""
    checks: dict[str, Callable[[], GateResult]] = {
        "schema_as_documented": lambda: schema_as_documented(frame),
        "uids_unique": lambda: uids_unique(frame, earlier),
        "tar_members_match_rows": lambda: tar_members_match_rows(frame, seen),
        "images_decode": lambda: images_decode(seen),
        "no_blocklisted_domain": lambda: no_blocklisted_domain(frame, takedowns),
        "no_cross_snapshot_duplicates": lambda: no_cross_snapshot_duplicates(frame, earlier),
    }
    return [_guarded(name, checks[name]) for name in GATES]


def _guarded(name: str, check: Callable[[], GateResult]) -> GateResult:
    """A gate that cannot even look (a column is missing) fails, saying why."""
    try:
        return check()
    except (pl.exceptions.ColumnNotFoundError, KeyError) as exc:
        return GateResult(name, False, f"cannot check: {type(exc).__name__}: {exc}"[:300], 1)
