"""The pair embedder against a straightforward reference computation (random small model, real photos).

``embed_parts`` prepares batches in loader processes, runs the text tower before the image tower
and writes float16 rows in place; none of that may change a single bit of the output.
"""

import io
import logging
import multiprocessing

import numpy as np
import pytest
import torch
from cn_clip.clip import tokenize
from PIL import Image

from danqing_assets.curation.embed.clip_model import ClipConfig, load_clip
from danqing_assets.curation.embed.embedder import embed_pairs, embed_parts
from danqing_assets_tests.realworld import REALWORLD

BATCH = 3


@pytest.fixture(scope="module")
def clip():
    torch.set_num_threads(1)
    return load_clip(ClipConfig(arch="RN50", allow_random_weights=True, device="cpu"))


@pytest.fixture(scope="module")
def pairs():
    photos = sorted((REALWORLD / "coco-cn" / "sample_images").glob("*.jpg"))[:6]
    images = [p.read_bytes() for p in photos] + [(REALWORLD / "chinese-clip" / "pokemon.jpeg").read_bytes()]
    texts = ["一只黄色的皮卡丘", "一只在草地上奔跑的狗", "红色的方块", "城市街道上的公共汽车", "桌上的一碗面条",
             "海边的日落", "两个人在公园里骑自行车"]
    assert len(images) == len(texts) == 7
    return images, texts


@torch.inference_mode()
def reference(clip, images, texts):
    """The plain computation, batch by batch: decode, preprocess, tokenise, encode, normalise, float16."""
    image_rows, text_rows = [], []
    for start in range(0, len(images), BATCH):
        pixels = torch.stack([clip.preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images[start:start + BATCH]])
        tokens = tokenize(texts[start:start + BATCH], context_length=clip.context_length)
        image_rows.append(torch.nn.functional.normalize(clip.model.encode_image(pixels).float(), dim=-1))
        text_rows.append(torch.nn.functional.normalize(clip.model.encode_text(tokens).float(), dim=-1))
    image, text = torch.cat(image_rows), torch.cat(text_rows)
    return image.numpy().astype(np.float16), text.numpy().astype(np.float16), (image * text).sum(dim=-1).numpy()


def assert_same(embeddings, expected):
    image, text, score = expected
    assert embeddings.image.dtype == np.float16 and embeddings.score.dtype == np.float32
    assert np.array_equal(embeddings.image, image) and np.array_equal(embeddings.text, text)
    assert np.array_equal(embeddings.score, score)


@pytest.mark.parametrize("workers", [0, 2])
def test_parts_come_back_in_order_with_their_labels_and_the_reference_values(clip, pairs, workers):
    images, texts = pairs
    cuts = [(0, 4), (4, 4), (4, 5), (5, 7)]  # an empty part, a one-pair part, parts not a multiple of the batch
    parts = [(f"part-{i}", images[a:b], texts[a:b]) for i, (a, b) in enumerate(cuts)]
    out = list(embed_parts(clip, iter(parts), batch_size=BATCH, workers=workers))
    assert [label for label, _ in out] == ["part-0", "part-1", "part-2", "part-3"]
    assert [e.image.shape for _, e in out] == [(4, 1024), (0, 1024), (1, 1024), (2, 1024)]
    for (_, embeddings), (a, b) in zip(out, cuts):
        if a == b:
            continue  # the empty part: its shape above is all there is
        assert_same(embeddings, reference(clip, images[a:b], texts[a:b]))  # each part batched on its own
        assert 0 < embeddings.seconds_model <= embeddings.seconds_total


def test_one_set_of_pairs_matches_the_reference_and_is_unit_length(clip, pairs):
    images, texts = pairs
    embeddings = embed_pairs(clip, images, texts, batch_size=BATCH, workers=1)
    assert_same(embeddings, reference(clip, images, texts))
    assert np.allclose(np.linalg.norm(embeddings.image.astype(np.float32), axis=1), 1, atol=1e-2)


def test_a_broken_image_or_mismatched_lengths_raise(clip, pairs):
    images, texts = pairs
    with pytest.raises(Exception, match="cannot identify image"):
        embed_pairs(clip, [images[0], b"not an image"], texts[:2], batch_size=BATCH, workers=1)
    with pytest.raises(ValueError, match="3 images but 2 texts"):
        embed_pairs(clip, images[:3], texts[:2], workers=0)


def _embed_in_daemon(clip, images, texts, results):
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("danqing_assets.curation.embed.embedder").addHandler(handler)
    results.put((embed_pairs(clip, images, texts, batch_size=BATCH, workers=2).image, messages))


def test_a_daemonic_process_decodes_in_process_with_a_warning(clip, pairs):
    images, texts = pairs
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    process = context.Process(target=_embed_in_daemon, args=(clip, images[:4], texts[:4], results), daemon=True)
    process.start()
    image, messages = results.get(timeout=120)
    process.join(timeout=30)
    assert process.exitcode == 0
    assert np.array_equal(image, reference(clip, images[:4], texts[:4])[0])
    assert any("daemonic process" in m and "num_workers=0" in m for m in messages)
