"""Image-level decisions of image_filtered_pairs, on crafted index rows."""

import polars as pl

from danqing_assets.assets.image_filtered_pairs import judge_images
from danqing_assets.curation.images.decode import phash_to_signed
from danqing_assets.settings import Settings

BASE = 0x5A5A_5A5A_0F0F_F0F0  # a photo-like hash: 32 bits set


def row(uid, phash, width=640, laplacian_var=5000.0):
    return {"url": f"http://img.example.cn/{uid}.jpg", "image_uid": uid, "shard": "s", "member": f"{uid}.jpg",
            "width": width, "height": 480, "orig_width": width, "orig_height": 480, "sha256": uid,
            "phash": phash_to_signed(phash), "pixel_std": 40.0, "laplacian_var": laplacian_var, "entropy": 6.0}


def test_a_rejected_image_does_not_chain_two_usable_images_into_one_cluster():
    a, b, c = BASE, BASE ^ 0b1111, BASE ^ 0b1111_1111  # a~b: 4 bits, b~c: 4 bits, a~c: 8 bits
    images = pl.DataFrame([row("a", a), row("b", b, laplacian_var=10.0), row("c", c)])
    judged = judge_images(images, Settings(), store=None, snapshot="CC-MAIN-2026-08")
    assert judged["image_reason"].to_list() == [None, "visual:blurry", None]


def test_near_duplicates_keep_the_largest_image():
    images = pl.DataFrame([row("a", BASE, width=500), row("b", BASE ^ 0b11, width=800), row("c", ~BASE & (2**64 - 1))])
    judged = judge_images(images, Settings(), store=None, snapshot="CC-MAIN-2026-08")
    assert judged["image_reason"].to_list() == ["near_duplicate", None, None]
    assert judged["cluster_size"].to_list() == [2, 2, 1]
