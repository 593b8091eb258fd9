"""``clip_filtered_pairs`` and ``clip_rejected_pairs``: the cross-modal band and semantic dedup.

Reads the stored embeddings; nothing is embedded again. The paper keeps pairs
whose Chinese-CLIP score lies in [1.06, 1.24] without publishing the score's
scale; we store the raw cosine and apply the band to ``cosine × DANQING_CLIP_SCORE_SCALE``
(default 4), so the paper's band corresponds to cosine 0.265–0.31. The asset page
shows the score distribution so the band can be calibrated.

Memory stays at a part plus a compact per-pair table, never a snapshot's embeddings:

1. ``clip_embeddings`` part by part, reading only uid, score and image embedding: a uid → score table
   (sorted by uid: ~60 bytes a pair) and, when semantic dedup is on, the image embeddings of the pairs
   inside the band appended to a scratch :class:`VectorFile` (float16, on disk);
2. ``image_filtered_pairs`` part by part, reading only uid and size: which pairs are in the band, in the
   order of the concatenated parts (rearranging the scratch file into that order if the embeddings come
   in another), with their area and uid for :func:`pick_representatives`;
3. :func:`semantic_clusters` over the file-backed vectors (it gathers rows batch by batch);
4. ``image_filtered_pairs`` part by part again: each part judged (band, then semantic duplicates) and
   written as one kept and one rejected part.

The rows, their order across parts, the reasons and the statistics are those of judging the whole
snapshot at once (a left join of pairs and embeddings, then the band and the clustering).
"""

import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import dagster as dg
import numpy as np
import polars as pl

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.dedup.near_duplicates import pick_representatives
from ..curation.dedup.semantic import row_norms, semantic_clusters, valid_norms
from ..curation.embed.clip_model import RANDOM_WEIGHTS_WARNING
from ..curation.embed.embedder import from_binary
from ..curation.embed.vector_file import VectorFile
from ..partitions import cc_snapshots
from ..resources.storage import ObjectStore, StorageResource, write_parquet
from ..resources.tables import TableManifest, iter_parts, manifest_key, part_key, read_table, schema_names
from ..retries import io_retry_policy
from ..settings import get_settings
from .metadata import counter_table
from .plots import bar_chart_png, markdown_image, sparkline_png

KEPT, REJECTED = "clip_filtered_pairs", "clip_rejected_pairs"
BIN, LO, HI = 0.05, 0.0, 2.0  # histogram of the scaled score
NOT_EMBEDDED, SEMANTIC_DUPLICATE = "clip:not_embedded", "semantic_duplicate"
REORDER_BATCH = 4096  # rows copied at a time when the scratch vectors are put in the pairs' order


def score_histogram(scaled: np.ndarray) -> tuple[list[str], list[int]]:
    bins = np.clip(((scaled - LO) / BIN).astype(int), 0, int((HI - LO) / BIN))
    counts = np.bincount(bins, minlength=int((HI - LO) / BIN) + 1).tolist()
    return [f"{LO + i * BIN:.2f}" for i in range(len(counts))], counts


def band_reasons(scaled: pl.Series, lo: float, hi: float) -> pl.Series:
    return pl.select(pl.when(pl.lit(scaled) < lo).then(pl.lit("clip_band:below"))
                     .when(pl.lit(scaled) > hi).then(pl.lit("clip_band:above"))).to_series()


@dataclass(frozen=True)
class Band:
    lo: float
    hi: float
    scale: float

    def scaled(self, clip_score: pl.Series) -> pl.Series:
        return clip_score.fill_null(float("nan")) * self.scale

    def reasons(self, clip_score: pl.Series) -> pl.Series:
        """Per pair: why the band drops it (null: inside the band)."""
        reason = band_reasons(self.scaled(clip_score), self.lo, self.hi)
        return pl.select(pl.when(pl.lit(clip_score).is_null()).then(pl.lit(NOT_EMBEDDED))
                         .otherwise(pl.lit(reason))).to_series()


def read_columns(store: ObjectStore, manifest: TableManifest, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """The table part by part (only ``columns``, if given); one empty frame for a table without parts."""
    if not manifest.parts:
        yield read_table(store, manifest, columns)
    yield from iter_parts(store, manifest, columns)


def valid_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows semantic_clusters counts as valid (its own norm and test)."""
    return valid_norms(row_norms(vectors))


def embedding_dim(manifest: TableManifest, embeddings: pl.Series) -> int:
    first = embeddings.drop_nulls()
    return len(first[0]) // 2 if len(first) else int(manifest.stats.get("dim", 0))


def read_scores(store: ObjectStore, manifest: TableManifest, band: Band, vectors: VectorFile | None) -> pl.DataFrame:
    """uid → clip_score, valid (embedding usable by the clustering) and vector_row (its row in ``vectors``
    if the pair is in the band and ``vectors`` is given), sorted by uid; the in-band embeddings appended
    to ``vectors`` in the order of the embedding parts."""
    frames = []
    for part in read_columns(store, manifest, ["uid", "clip_score", "image_embedding"]):
        in_band = band.reasons(part["clip_score"]).is_null().to_numpy()
        vector_row = np.full(part.height, -1, dtype=np.int64)
        valid = np.zeros(part.height, dtype=bool)
        if vectors is not None and part.height:
            dim = vectors.dim
            matrix = from_binary([b if b is not None else bytes(2 * dim) for b in part["image_embedding"].to_list()])
            valid = valid_rows(matrix)
            vector_row[in_band] = np.arange(vectors.rows, vectors.rows + int(in_band.sum()))
            vectors.append(matrix[in_band])
        frames.append(part.select("uid", "clip_score").with_columns(
            valid=pl.Series(valid), vector_row=pl.Series(vector_row)))
    scores = pl.concat(frames).sort("uid", maintain_order=True)
    # a uid embedded twice would have multiplied its pairs in a join; the first embedding is the one used
    return scores.filter(pl.col("uid").ne_missing(pl.col("uid").shift(1)))


def lookup(scores: pl.DataFrame, uids: pl.Series) -> pl.DataFrame:
    """The row of ``scores`` (sorted, unique uids) for each uid, nulls where it has none: a left join that
    keeps the order of ``uids``, at a binary search per uid (no hash table of the whole snapshot per part)."""
    if scores.height == 0:
        return scores.drop("uid").clear(len(uids))
    at = scores["uid"].search_sorted(uids, side="left").clip(upper_bound=scores.height - 1)
    found = scores["uid"].gather(at) == uids
    rows = scores.drop("uid")[at.to_numpy()]
    return rows.select(pl.when(pl.lit(found)).then(pl.all()).otherwise(None))


@dataclass
class InBand:
    """The pairs inside the band, in the order of the concatenated pair parts."""

    vector_rows: np.ndarray  # each one's row in the scratch vectors
    area: pl.Series
    uid: pl.Series
    pairs: int  # pairs in all
    out_of_band_valid: int  # pairs outside the band whose embedding is usable (semantic_clusters' "excluded")
    out_of_band_invalid: int


def find_in_band(store: ObjectStore, manifest: TableManifest, scores: pl.DataFrame, band: Band) -> InBand:
    rows, areas, uids, pairs, valid_out, invalid_out = [], [], [], 0, 0, 0
    for part in read_columns(store, manifest, ["uid", "orig_width", "orig_height"]):
        found = lookup(scores, part["uid"])
        in_band = band.reasons(found["clip_score"]).is_null()
        valid = found["valid"].fill_null(False).to_numpy()
        pairs += part.height
        valid_out += int((valid & ~in_band.to_numpy()).sum())
        invalid_out += int((~valid & ~in_band.to_numpy()).sum())
        rows.append(found["vector_row"].filter(in_band).to_numpy())
        areas.append((part["orig_width"].cast(pl.Int64) * part["orig_height"].cast(pl.Int64)).filter(in_band))
        uids.append(part["uid"].filter(in_band))
    return InBand(np.concatenate(rows).astype(np.int64), pl.concat(areas), pl.concat(uids), pairs, valid_out,
                  invalid_out)


def in_pair_order(vectors: VectorFile, rows: np.ndarray, directory: str) -> VectorFile:
    """A file with the rows of ``vectors`` as ``rows`` lists them: ``vectors`` itself when that is already its
    order, else a second file, read from the first with one positioned read per row (a memory map would map
    a 2 MiB folio per scattered row: see semantic.py)."""
    if np.array_equal(rows, np.arange(vectors.rows)):
        return vectors
    vectors.array()  # flushes and closes it for writing
    ordered = VectorFile(vectors.dim, dtype=vectors.dtype, directory=directory)
    row_bytes = vectors.dim * vectors.dtype.itemsize
    with open(vectors.path, "rb", buffering=0) as source:
        for s in range(0, rows.size, REORDER_BATCH):
            batch = rows[s : s + REORDER_BATCH]
            out = np.empty((batch.size, vectors.dim), dtype=vectors.dtype)
            for i, row in enumerate(batch.tolist()):
                if os.preadv(source.fileno(), [memoryview(out[i]).cast("B")], row * row_bytes) != row_bytes:
                    raise OSError(f"{vectors.path}: short read at row {row}")
            ordered.append(out)
    return ordered


def cluster(vectors: np.ndarray, in_band: InBand, snapshot: str, max_distance: float) -> tuple[np.ndarray, dict, int]:
    """Per in-band pair: whether it is a semantic duplicate (in a cluster, not its representative); the
    clustering's statistics; clusters with duplicates."""
    labels, stats = semantic_clusters(vectors, max_distance)
    # Judging the whole snapshot, the out-of-band pairs were rows too, excluded or invalid: count them so.
    stats.n, stats.invalid = in_band.pairs, stats.invalid + in_band.out_of_band_invalid
    stats.excluded, stats.dim = in_band.out_of_band_valid, stats.dim if in_band.pairs else 0
    keep = pick_representatives(labels, area=in_band.area, snapshot=[snapshot] * labels.size, uid=in_band.uid)
    clustered = int(np.sum(np.bincount(labels) > 1)) if labels.size else 0
    return ~keep, stats.as_dict(), clustered


class Verdicts:
    """The semantic verdicts of the in-band pairs (True: a duplicate), handed out in order, part by part."""

    def __init__(self, duplicate: np.ndarray) -> None:
        self.duplicate, self.taken = duplicate, 0

    def take(self, count: int) -> np.ndarray:
        out = self.duplicate[self.taken : self.taken + count]
        if out.size != count:
            raise ValueError(f"{count} in-band pairs but only {out.size} verdicts left: did the pairs change?")
        self.taken += count
        return out


def semantic_verdicts(store: ObjectStore, pairs: TableManifest, embeddings: TableManifest, band: Band,
                      snapshot: str, max_distance: float) -> tuple[pl.DataFrame, Verdicts, dict, int]:
    """The score table, each in-band pair's semantic verdict (in order), the statistics and the clusters
    with duplicates. The embeddings go through scratch files, never all in memory."""
    dim = embedding_dim(embeddings, first_embeddings(store, embeddings))
    with tempfile.TemporaryDirectory(prefix="danqing-clip-filter-") as scratch, ExitStack() as files:
        vectors = files.enter_context(VectorFile(dim, directory=scratch)) if dim else None
        scores = read_scores(store, embeddings, band, vectors)
        in_band = find_in_band(store, pairs, scores, band)
        if vectors is None:
            matrix = np.zeros((0, 0), dtype=np.float16)
        else:
            matrix = files.enter_context(in_pair_order(vectors, in_band.vector_rows, scratch)).array()
        duplicate, semantic, clustered = cluster(matrix, in_band, snapshot, max_distance)
        del matrix  # before the files close: their mapping goes with it
    return scores, Verdicts(duplicate), semantic, clustered


def judge(part: pl.DataFrame, scores: pl.DataFrame, band: Band, verdicts: Verdicts | None) -> pl.DataFrame:
    """The part with clip_score and reason (null: kept); ``verdicts``: those of its in-band pairs come next
    (None: semantic dedup off)."""
    joined = part.with_columns(clip_score=lookup(scores.select("uid", "clip_score"), part["uid"])["clip_score"])
    reason = band.reasons(joined["clip_score"])
    in_band = reason.is_null().to_numpy()
    duplicate = np.zeros(part.height, dtype=bool)
    if verdicts is not None:
        duplicate[in_band] = verdicts.take(int(in_band.sum()))
    reason = pl.select(pl.when(pl.lit(duplicate)).then(pl.lit(SEMANTIC_DUPLICATE))
                       .otherwise(pl.lit(reason))).to_series()
    return joined.with_columns(reason=reason)


@dg.multi_asset(
    outs={
        KEPT: dg.AssetOut(group_name="embed", code_version=asset_code_version(KEPT),
                          automation_condition=follows_upstream_and_settings(),
                          description="Pairs inside the Chinese-CLIP band, one per semantic near-duplicate cluster."),
        REJECTED: dg.AssetOut(group_name="embed", code_version=asset_code_version(REJECTED),
                          automation_condition=follows_upstream_and_settings(),
                          description="Pairs outside the band or semantic duplicates, with reason."),
    },
    ins={"image_filtered_pairs": dg.AssetIn(), "clip_embeddings": dg.AssetIn()},
    partitions_def=cc_snapshots,
    retry_policy=io_retry_policy(),
)
def clip_filtered_pairs(context: dg.AssetExecutionContext, storage: StorageResource, image_filtered_pairs: TableManifest,
                        clip_embeddings: TableManifest):
    settings = get_settings()
    store = storage.store()
    snapshot = context.partition_key
    random_weights = bool(clip_embeddings.stats.get("random_weights"))
    band = Band(settings.clip_band_min, settings.clip_band_max, settings.clip_score_scale)
    if settings.semantic_max_distance >= 0:
        scores, verdicts, semantic, clustered = semantic_verdicts(
            store, image_filtered_pairs, clip_embeddings, band, snapshot, settings.semantic_max_distance)
    else:  # switched off (the demo does so on random weights, where every image embeds alike)
        scores, verdicts, semantic, clustered = read_scores(store, clip_embeddings, band, None), None, {"disabled": True}, 0
    written = write_judged_parts(store, image_filtered_pairs, scores, band, verdicts, snapshot, context.run.run_id[:8])
    kept_keys, rejected_keys, kept_rows, rejected_rows, rows_in, reasons, counts, kept_schema, rejected_schema = written
    steps = [["clip_band", rows_in, rows_in - sum(v for k, v in reasons.items() if k.startswith("clip"))]]
    steps.append(["semantic_dedup", steps[0][2], kept_rows])
    summary = {"rows_in": rows_in, "rows_out": kept_rows, "steps": steps, "reasons": reasons,
               "random_weights": random_weights, "semantic": semantic,
               "band": [settings.clip_band_min, settings.clip_band_max], "score_scale": settings.clip_score_scale}
    labels_ = [f"{LO + i * BIN:.2f}" for i in range(len(counts))]
    band_text = f"band [{settings.clip_band_min}, {settings.clip_band_max}] on {settings.clip_score_scale:g} × cosine"
    chart = bar_chart_png(labels_, counts, f"Chinese-CLIP score ({settings.clip_score_scale:g} x cosine), {snapshot}; {band_text}")
    warning = "RANDOM WEIGHTS — these scores are meaningless. " if random_weights else ""
    inline = markdown_image(sparkline_png(counts), "CLIP score distribution") + (
        f"\n\n{warning}scaled score 0–2 in bins of {BIN}; {band_text}")
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(kept_rows),
        "rows_in": rows_in,
        "funnel": dg.MetadataValue.md("\n".join(["| step | in | out |", "|---|---:|---:|",
                                                 *(f"| {n} | {a:,} | {b:,} |" for n, a, b in steps)])),
        "dropped_by_reason": dg.MetadataValue.md(counter_table(reasons, "reason", "pairs")),
        "score_distribution": dg.MetadataValue.md(inline),
        "score_chart": dg.MetadataValue.md(markdown_image(chart, "CLIP score chart")),
        "semantic_clusters_with_duplicates": clustered,
        "random_weights": random_weights,
        "location": dg.MetadataValue.text(store.uri(manifest_key(KEPT, snapshot))),
    }
    if random_weights:
        metadata["WARNING"] = dg.MetadataValue.md(f"**{RANDOM_WEIGHTS_WARNING}**")
    yield dg.Output(TableManifest(KEPT, snapshot, kept_keys, kept_rows, kept_schema, summary),
                    output_name=KEPT, metadata=metadata)
    yield dg.Output(TableManifest(REJECTED, snapshot, rejected_keys, rejected_rows, rejected_schema, {"reasons": reasons}),
                    output_name=REJECTED, metadata={"dagster/row_count": dg.MetadataValue.int(rejected_rows),
                                                    "dropped_by_reason": dg.MetadataValue.md(counter_table(reasons, "reason", "pairs"))})


def first_embeddings(store: ObjectStore, manifest: TableManifest) -> pl.Series:
    """The image embeddings of the first part that has rows (to learn their dimension)."""
    for part in read_columns(store, manifest, ["image_embedding"]):
        if part.height:
            return part["image_embedding"]
    return pl.Series("image_embedding", [], dtype=pl.Binary)


def write_judged_parts(store: ObjectStore, pairs: TableManifest, scores: pl.DataFrame, band: Band,
                       verdicts: Verdicts | None, snapshot: str, run: str):
    """Judge the pairs part by part; one kept and one rejected part per pair part."""
    kept_keys, rejected_keys, kept_rows, rejected_rows, rows_in = [], [], 0, 0, 0
    reasons, counts = Counter(), np.zeros(int((HI - LO) / BIN) + 1, dtype=np.int64)
    kept_schema = rejected_schema = {}
    for index, part in enumerate(read_columns(store, pairs)):
        judged = judge(part, scores, band, verdicts)
        kept = judged.filter(pl.col("reason").is_null()).drop("reason")
        rejected = judged.filter(pl.col("reason").is_not_null())
        name = f"part-{index:05d}-{run}"
        kept_key, rejected_key = part_key(KEPT, snapshot, name), part_key(REJECTED, snapshot, name)
        write_parquet(store, kept_key, kept)
        write_parquet(store, rejected_key, rejected)
        kept_keys.append(kept_key)
        rejected_keys.append(rejected_key)
        kept_rows, rejected_rows, rows_in = kept_rows + kept.height, rejected_rows + rejected.height, rows_in + part.height
        reasons.update(dict(rejected["reason"].value_counts().iter_rows()))
        counts += score_histogram(np.nan_to_num(band.scaled(judged["clip_score"]).to_numpy(), nan=-1.0))[1]
        kept_schema, rejected_schema = schema_names(dict(kept.schema)), schema_names(dict(rejected.schema))
    return (tuple(kept_keys), tuple(rejected_keys), kept_rows, rejected_rows, rows_in, dict(sorted(reasons.items())),
            counts.tolist(), kept_schema, rejected_schema)
