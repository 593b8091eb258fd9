"""pHash near-duplicate clustering: equivalence with brute force, degenerate hashes, real images, representatives.

Real images are hashed the way the pipeline should hash them (:func:`pipeline_phash`):
``ImageOps.exif_transpose``; 16-bit / 32-bit grey (I;16, I, F) contrast-stretched to 8 bits (pHash is
invariant to positive affine intensity maps, but ``convert("L")`` clips them to white: flat hash);
anything with transparency (RGBA, LA, PA, P or L/RGB with a tRNS key) flattened onto white; other
modes (P, CMYK, 1, …) converted to RGB; then ``imagehash.phash`` (which converts to L itself).

Distances measured with Pillow 13.0 / imagehash 4.3.2 (all even: real pHashes have exactly 32 bits set):

* hopper — JPEG, PNG, GIF (P), BMP, RLE8 BMP (P), grey JPEG (L): 0; lossy WebP and AVIF: 2;
  EXIF Orientation 3/6/8 JPEGs after exif_transpose: 0 (28–34 without it); Orientation 6 WebP: 2;
  the 16×16 ICO: 10 (a thumbnail, rejected earlier by the size filter).
* bigbuckbunny.png / bigbuckbunny-with-diff-icc.png: 0.
* other twins in the Pillow set: CMYK/RGB JPEG 0; iss634 GIF/WebP/APNG 0; MPO/JPEG 0;
  transparent PNG/WebP/GIF (flattened on white) 0; l_trns/i_trns (I;16) 0, 1_trns (1-bit) 4.
* distinct pictures (peppers, hopper, bigbuckbunny, imagehash.png, ten COCO photos, pokemon): ≥ 18
  (median ~32).

So the default threshold 4 (4 ≡ 5 for real hashes) joins every same-picture family with margin and
stays far below the closest distinct pair.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import imagehash
import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageOps, features
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from danqing_assets.curation.dedup.near_duplicates import (
    DEFAULT_MAX_DISTANCE,
    _pairs_bruteforce,
    block_plan,
    cluster_near_duplicates,
    degenerate_hashes,
    near_duplicate_clusters,
    pick_representatives,
)
from danqing_assets.settings import Settings
from danqing_assets_tests.realworld import REALWORLD

PILLOW = REALWORLD / "pillow-test-images"
IMAGEHASH = REALWORLD / "imagehash-tests"
COCO = REALWORLD / "coco-cn" / "sample_images"


# --- helpers -------------------------------------------------------------------------------------


def reference_labels(hashes: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
    """Components of the brute-force graph, labelled by their smallest row."""
    n = hashes.size
    i, j = _pairs_bruteforce(hashes, k, exclude)
    graph = coo_array((np.ones(i.size), (i, j)), shape=(n, n))
    _, cc = connected_components(graph, directed=False)
    smallest = np.full(cc.max() + 1, n)
    np.minimum.at(smallest, cc, np.arange(n))
    return smallest[cc]


def flip(value: int, rng: np.random.Generator, bits: int) -> int:
    for b in rng.choice(64, bits, replace=False):
        value ^= 1 << int(b)
    return value


def planted(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Random hashes with near-duplicates of random rows at exact distances 0..k+1 (chains included)."""
    hashes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    targets = rng.permutation(n)[: n // 3]
    for t in targets:
        hashes[t] = flip(int(hashes[rng.integers(0, n)]), rng, int(rng.integers(0, k + 2)))
    hashes[rng.permutation(n)[:40]] = hashes[0]  # one larger exact-duplicate group
    return hashes


def pipeline_phash(path: Path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Image.open(path)
        image.load()
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = np.asarray(image, dtype=np.float64)
        low, high = grey.min(), grey.max()
        grey = (grey - low) * (255.0 / (high - low)) if high > low else np.zeros_like(grey)
        image = Image.fromarray(np.rint(grey).astype(np.uint8), "L")
    elif image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return int(str(imagehash.phash(image)), 16)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# --- equivalence with brute force ----------------------------------------------------------------


@pytest.mark.parametrize("k", range(0, 9))
def test_same_components_as_brute_force(k: int) -> None:
    rng = np.random.default_rng(1000 + k)
    hashes = planted(rng, 2000, k)
    none = np.zeros(hashes.size, dtype=bool)
    labels, stats = near_duplicate_clusters(hashes, k, exclude=none)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, reference_labels(hashes, k, none))
    assert stats.clusters > 100 and stats.truncated_runs == 0
    # every pair of distinct near values is an edge exactly once (first block choice owns it)
    unique = np.unique(hashes)
    assert stats.edges == _pairs_bruteforce(unique, k)[0].size


@pytest.mark.parametrize("k", [2, 4, 6])
def test_excluded_rows_are_singletons_and_change_nothing_else(k: int) -> None:
    rng = np.random.default_rng(7 + k)
    hashes = planted(rng, 2000, k)
    exclude = rng.random(hashes.size) < 0.1
    labels = cluster_near_duplicates(hashes, k, exclude)
    np.testing.assert_array_equal(labels[exclude], np.flatnonzero(exclude))
    np.testing.assert_array_equal(labels, reference_labels(hashes, k, exclude))


@pytest.mark.parametrize("blocks", [5, 6, 8, 11])
def test_any_block_count_gives_the_same_answer(blocks: int) -> None:
    rng = np.random.default_rng(blocks)
    hashes = planted(rng, 1500, 4)
    none = np.zeros(hashes.size, dtype=bool)
    labels, stats = near_duplicate_clusters(hashes, 4, none, blocks=blocks)
    assert stats.blocks == blocks
    np.testing.assert_array_equal(labels, reference_labels(hashes, 4, none))


def test_signed_and_python_int_inputs_are_the_same_bits() -> None:
    rng = np.random.default_rng(3)
    hashes = planted(rng, 500, 4)
    expected = cluster_near_duplicates(hashes, 4)
    np.testing.assert_array_equal(cluster_near_duplicates(hashes.view(np.int64), 4), expected)
    np.testing.assert_array_equal(cluster_near_duplicates([int(h) for h in hashes], 4), expected)
    assert cluster_near_duplicates(np.empty(0, dtype=np.uint64), 4).size == 0


def test_plan_keeps_prefixes_long_enough() -> None:
    assert block_plan(10_000_000, 4).prefix_bits_min >= 26  # log2(1e7) + 2
    assert block_plan(100_000_000, 4).prefix_bits_min >= 26
    assert block_plan(1_000_000, 2).prefix_bits_min >= 21
    with pytest.raises(ValueError):
        block_plan(1000, 4, blocks=4)  # fewer than k+1 blocks breaks the pigeonhole guarantee


def test_default_threshold_is_the_settings_default() -> None:
    assert Settings().phash_max_distance == DEFAULT_MAX_DISTANCE == 4


# --- pathological inputs -------------------------------------------------------------------------


def test_a_million_identical_hashes_cost_nothing_pairwise() -> None:
    rng = np.random.default_rng(5)
    hashes = np.full(1_000_000, 0x8C977C0983CE9E8D, dtype=np.uint64)
    hashes[::1000] = rng.integers(0, 2**63, 1000, dtype=np.uint64)
    started = time.perf_counter()
    labels, stats = near_duplicate_clusters(hashes, 4)
    assert time.perf_counter() - started < 5
    assert stats.unique_hashes <= 1001 and stats.candidate_pairs < 10_000
    assert (labels[hashes == hashes[1]] == 1).all()


def test_a_dense_cloud_of_distinct_near_hashes_is_capped_but_still_one_cluster() -> None:
    # All 18,473 hashes within 3 bits of one base (flips among its 48 low bits): most share most prefixes, so
    # the sorts yield runs of thousands of distinct rows (~1e7 pairs each if compared pairwise). The cap
    # compares sorted neighbours only — and that still links the cloud into one cluster.
    base = 0x8C977C0983CE9E8D
    cloud = sorted({base ^ (1 << a) ^ (1 << b) ^ (1 << c) for a in range(48) for b in range(48) for c in range(48)})
    rng = np.random.default_rng(11)
    noise = rng.integers(0, 2**63, 20_000, dtype=np.uint64)
    hashes = np.concatenate([np.array(cloud, dtype=np.uint64), noise, noise[:5000]])  # plus exact copies
    started = time.perf_counter()
    labels, stats = near_duplicate_clusters(hashes, 4, max_offset=16)
    assert time.perf_counter() - started < 10
    assert stats.truncated_runs > 0 and stats.longest_run > 1000 and stats.truncated_rows > len(cloud)
    assert np.unique(labels[: len(cloud)]).size == 1
    assert stats.candidate_pairs <= 16 * stats.unique_hashes * stats.permutations
    assert (labels[len(cloud) + 20_000 :] == np.arange(len(cloud), len(cloud) + 5000)).all()


def test_edge_compaction_keeps_the_components(monkeypatch: pytest.MonkeyPatch) -> None:
    import danqing_assets.curation.dedup.near_duplicates as module

    monkeypatch.setattr(module, "_COMPACT_MIN_EDGES", 50)
    rng = np.random.default_rng(21)
    hashes = planted(rng, 3000, 4)
    hashes[:300] = [flip(0x8C977C0983CE9E8D, rng, int(rng.integers(1, 3))) for _ in range(300)]  # a big cloud
    none = np.zeros(hashes.size, dtype=bool)
    labels, stats = near_duplicate_clusters(hashes, 4, none, max_offset=4)  # truncation: repeated edges
    assert stats.truncated_runs > 0 and stats.edges > 3000
    np.testing.assert_array_equal(labels, reference_labels(hashes, 4, none))


# --- degenerate hashes ---------------------------------------------------------------------------


def flat_images() -> list[Image.Image]:
    sizes = [(1, 1), (8, 8), (32, 32), (100, 37), (300, 225), (640, 480), (1024, 768)]
    colours = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (255, 0, 0), (12, 200, 77), (250, 250, 250), (37, 99, 180)]
    images = [Image.new("RGB", sizes[i % len(sizes)], colours[i % len(colours)]) for i in range(35)]
    for w, h in [(64, 64), (300, 100), (640, 480)]:  # ramps and bands vary along one axis only
        x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
        y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
        for grey in (x, 255 - x, y, 255 - y, 100 + x / 85):
            images.append(Image.fromarray(grey.astype(np.uint8), "L"))
    return images


def test_flat_images_have_degenerate_hashes_and_stay_singletons() -> None:
    images = flat_images()
    assert len(images) == 50
    hashes = np.array([int(str(imagehash.phash(im)), 16) for im in images], dtype=np.uint64)
    assert set(np.unique(hashes[:35]).tolist()) == {0, 0x8000000000000000}
    assert degenerate_hashes(hashes).all()
    hopper = [pipeline_phash(PILLOW / "hopper.png"), pipeline_phash(PILLOW / "hopper.webp")]  # at distance 2
    all_hashes = np.concatenate([hashes, np.array(hopper, dtype=np.uint64)])
    labels = cluster_near_duplicates(all_hashes, 4)
    np.testing.assert_array_equal(labels[:50], np.arange(50))
    assert labels[50] == labels[51] == 50
    # without the guard the blank images would collapse into a handful of huge clusters
    assert np.unique(cluster_near_duplicates(hashes, 4, exclude=np.zeros(50, dtype=bool))).size < 10


def test_degenerate_hash_values() -> None:
    flagged = [0, 0x8000000000000000, 0xFF00000000000000, 0xAB00000000000000, 0x8080808080808080,
               0x8080008000800080, 0x8000000000000001, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFF8]
    real = [0x8C977C0983CE9E8D, 0xCBB0266E79CBB0A2, 0x92A71CDC79D980E3, 0xB7827E51C3E0075B]
    assert degenerate_hashes(flagged).all()
    assert not degenerate_hashes(real).any()


# --- real images ---------------------------------------------------------------------------------

HOPPER_FAMILY = ["hopper.jpg", "hopper.png", "hopper.gif", "hopper.bmp", "hopper_gray.jpg", "hopper_rle8.bmp",
                 "hopper.webp"] + (["avif_hopper.avif"] if features.check("avif") else [])
HOPPER_ROTATED = ["hopper_orientation_3.jpg", "hopper_orientation_6.jpg", "hopper_orientation_8.jpg",
                  "hopper_orientation_6.webp"]
OTHER_TWINS = [["pil_sample_cmyk.jpg", "pil_sample_rgb.jpg"], ["iss634.gif", "iss634.webp", "iss634.apng"],
               ["sugarshack.mpo", "sugarshack_bad_mpo_header.jpg"],
               ["transparent.png", "transparent.webp", "transparent.gif"]]
DISTINCT = ([IMAGEHASH / "peppers.png", IMAGEHASH / "imagehash.png", REALWORLD / "chinese-clip" / "pokemon.jpeg"]
            + sorted(COCO.glob("*.jpg")))


def test_manifest_lists_the_families() -> None:
    manifest = {r["file"]: r for r in map(json.loads, (PILLOW / "manifest.jsonl").read_text().splitlines())}
    assert all(manifest[f]["orient"] in (3, 6, 8) for f in HOPPER_ROTATED)
    assert manifest["16bit.cropped.tif"]["phash"] == "8000000000000000"  # naive convert("L"): clipped flat


def test_real_image_families_cluster_and_distinct_pictures_do_not() -> None:
    groups: list[list[Path]] = [
        [PILLOW / f for f in HOPPER_FAMILY + HOPPER_ROTATED],
        [IMAGEHASH / "bigbuckbunny.png", IMAGEHASH / "bigbuckbunny-with-diff-icc.png"],
        *[[PILLOW / f for f in twins] for twins in OTHER_TWINS],
        *[[path] for path in DISTINCT],
    ]
    paths = [p for group in groups for p in group]
    group_of = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    hashes = np.array([pipeline_phash(p) for p in paths], dtype=np.uint64)
    assert not degenerate_hashes(hashes).any()

    for g in range(len(groups)):  # measured: 0 or 2 inside every family (see the module docstring)
        members = [int(h) for h in hashes[group_of == g]]
        assert max(hamming(a, b) for a in members for b in members) <= 2, groups[g]
    firsts = [int(hashes[group_of == g][0]) for g in range(len(groups))]
    closest = min(hamming(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1 :])
    assert closest >= 4 * DEFAULT_MAX_DISTANCE  # measured: 18

    labels = cluster_near_duplicates(hashes, DEFAULT_MAX_DISTANCE)
    for g in range(len(groups)):
        assert np.unique(labels[group_of == g]).size == 1, groups[g]
    assert np.unique(labels).size == len(groups)


def test_exif_rotation_must_be_applied_before_hashing() -> None:
    upright = pipeline_phash(PILLOW / "hopper.jpg")
    for name in HOPPER_ROTATED:
        raw = int(str(imagehash.phash(Image.open(PILLOW / name).convert("RGB"))), 16)
        assert hamming(raw, upright) >= 20  # measured 28–34: rotated pixels are another picture to pHash
        assert hamming(pipeline_phash(PILLOW / name), upright) <= 2


def test_sixteen_bit_grey_is_stretched_not_clipped() -> None:
    clipped = int(str(imagehash.phash(Image.open(PILLOW / "16bit.cropped.tif"))), 16)
    assert degenerate_hashes([clipped])[0]
    assert not degenerate_hashes([pipeline_phash(PILLOW / "16bit.cropped.tif")])[0]
    assert pipeline_phash(PILLOW / "i_trns.png") == pipeline_phash(PILLOW / "l_trns.png")  # I;16 and L twins


# --- representatives -----------------------------------------------------------------------------


def test_representative_is_largest_then_earliest_snapshot_then_smallest_uid() -> None:
    labels = np.array([0, 0, 0, 3, 3, 3, 6, 6, 8])
    area = [100, 400, 400, 50, 50, 50, 10, 10, 1]
    snapshot = ["CC-MAIN-2026-08", "CC-MAIN-2025-47", "CC-MAIN-2024-10", "CC-MAIN-2026-08", "CC-MAIN-2026-04",
                "CC-MAIN-2026-04", "CC-MAIN-2026-08", "CC-MAIN-2026-08", "CC-MAIN-2026-08"]
    uid = ["u0", "u1", "u2", "u3", "u5", "u4", "b", "a", "z"]
    mask = pick_representatives(labels, area=area, snapshot=snapshot, uid=uid)
    assert np.flatnonzero(mask).tolist() == [2, 5, 7, 8]

    width = [a // 10 if a >= 10 else a for a in area]
    height = [10 if a >= 10 else 1 for a in area]
    frame = pl.DataFrame({"width": width, "height": height, "snapshot": snapshot, "uid": uid})
    np.testing.assert_array_equal(pick_representatives(labels, frame), mask)
    np.testing.assert_array_equal(
        pick_representatives(labels, pl.DataFrame({"area": area, "snapshot": snapshot, "uid": uid})), mask
    )

    order = np.random.default_rng(0).permutation(labels.size)  # row order does not matter
    shuffled = pick_representatives(labels[order], area=np.array(area)[order], snapshot=np.array(snapshot)[order],
                                    uid=np.array(uid)[order])
    assert sorted(np.array(uid)[order][shuffled].tolist()) == sorted(np.array(uid)[mask].tolist())


def test_representatives_with_nulls_and_one_per_cluster_at_scale() -> None:
    mask = pick_representatives(np.array([0, 0, 0]), area=[None, 5, 5], snapshot=["A", None, "B"], uid=[1, 2, 3])
    assert mask.tolist() == [False, False, True]  # null area and null snapshot rank last

    rng = np.random.default_rng(2)
    hashes = planted(rng, 5000, 4)
    labels = cluster_near_duplicates(hashes, 4)
    mask = pick_representatives(labels, area=rng.integers(1, 5, labels.size),
                                snapshot=["CC-MAIN-2026-08"] * labels.size, uid=np.arange(labels.size))
    assert mask.sum() == np.unique(labels).size
    assert np.unique(labels[mask]).size == np.unique(labels).size


# --- at scale: planted groups with a known answer ------------------------------------------------


def random_bits(rng: np.random.Generator, rows: int, count: int, low: int, high: int) -> np.ndarray:
    """Per row, a mask of ``count`` distinct random bits among bits low..high-1."""
    choice = np.argsort(rng.random((rows, high - low)), axis=1)[:, :count] + low
    return np.bitwise_or.reduce(np.left_shift(np.uint64(1), choice.astype(np.uint64)), axis=1)


def test_planted_groups_at_scale_are_found_exactly() -> None:
    # 300,000 random hashes (pairs within 4 by chance: ~3e-3 expected) hold 20,000 planted groups: a seed, 1-5
    # copies at 0-4 flips among bits 0-31, a chained row 4 flips from the first copy (up to 8 from the seed), and
    # one hard negative per seed at 5 flips among bits 32-62 (so at least 5 from every row of its group). Some
    # exact copies are excluded (singletons; the group stays linked through its seed). The known answer: every
    # group row is labelled with its group's smallest row that is not excluded, every other row with itself.
    rng = np.random.default_rng(42)
    n, groups, k = 300_000, 20_000, 4
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64) | np.uint64(1 << 63)
    copies = rng.integers(1, 6, groups)
    rows = rng.permutation(n)[: 3 * groups + copies.sum()]
    seeds, chained, negatives, members = np.split(rows, [groups, 2 * groups, 3 * groups])
    member_group = np.repeat(np.arange(groups), copies)
    flips = rng.integers(0, k + 1, members.size)
    hashes[members] = hashes[seeds[member_group]]
    for count in range(1, k + 1):
        hashes[members[flips == count]] ^= random_bits(rng, int(np.sum(flips == count)), count, 0, 32)
    first_member = members[np.r_[0, np.cumsum(copies)[:-1]]]
    hashes[chained] = hashes[first_member] ^ random_bits(rng, groups, k, 0, 32)
    hashes[negatives] = hashes[seeds] ^ random_bits(rng, groups, k + 1, 32, 63)
    excluded = np.zeros(n, dtype=bool)
    excluded[rng.choice(members[flips == 0], 1000, replace=False)] = True

    group_rows = np.concatenate([seeds, chained, members])
    group_of = np.concatenate([np.arange(groups), np.arange(groups), member_group])
    included = ~excluded[group_rows]
    smallest = np.full(groups, n)
    np.minimum.at(smallest, group_of[included], group_rows[included])
    expected = np.arange(n)
    expected[group_rows[included]] = smallest[group_of[included]]

    labels, stats = near_duplicate_clusters(hashes, k, exclude=excluded)
    np.testing.assert_array_equal(labels, expected)
    assert stats.excluded == 1000 and stats.clusters == groups and stats.truncated_runs == 0
