"""Embedding throughput of the pipeline beside the bare model forward pass, same device, same run.

    .venv/bin/python benchmarks/embedding.py [--pairs 64] [--chunk 64] [--arch RN50] [--device cpu|cuda]
        [--batch-size 16] [--threads 1] [--loader-workers 1] [--json out.json]

THE MODEL HAS RANDOM WEIGHTS (cn_clip's architecture, randomly initialised, seeded): no weights are
downloaded. Throughput does not depend on the weights' values, so the figures hold for the trained
model of the same architecture; the embeddings themselves are meaningless.

Pairs: JPEGs made from the real COCO photos in ../shared/realworld (300–1600 px, see
``image_decode.py``; a pool of distinct files cycled) with real COCO-CN captions. Both sides run
in the same process on the same device:
- ours: one :func:`embed_parts` over chunks of ``--chunk`` pairs (as ``clip_embeddings`` does over
  the parts of a step): JPEG bytes read from disk chunk by chunk, decoded, preprocessed and tokenised
  by loader processes started once, then ``encode_text`` and ``encode_image``, L2-normalised, float16;
- bare: the same model's ``encode_image`` and ``encode_text`` on tensors and tokens prepared
  beforehand (untimed): the forward pass alone.
The ratio ours / bare says whether the loader hides decoding. On CPU torch gets ``--threads``
threads and the loader ``--loader-workers`` processes, so both fit the cores without fighting.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PeakRSS, comparison, stage_result, target  # noqa: E402
from image_decode import make_jpegs  # noqa: E402
from text_stage import captions  # noqa: E402

import torch  # noqa: E402

from danqing_assets.curation.embed.clip_model import ClipConfig, load_clip  # noqa: E402
from danqing_assets.curation.embed.embedder import _normalise, embed_parts  # noqa: E402

RANDOM_NOTE = "RANDOM-WEIGHT model (cn_clip architecture, seeded): throughput only, embeddings meaningless"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def bare_forward(clip, images: list[torch.Tensor], tokens: list[torch.Tensor]) -> int:
    """The forward pass alone on prepared batches (already on the device)."""
    for batch in images:
        _normalise(clip.model.encode_image(batch).float()).cpu()
    for batch in tokens:
        _normalise(clip.model.encode_text(batch).float()).cpu()
    sync(clip.device)
    return sum(b.shape[0] for b in images)


def chunks(paths: list[Path], texts: list[str], chunk: int):
    """The pairs chunk by chunk, each chunk's JPEGs read from disk only when the embedder reaches it."""
    for start in range(0, len(paths), chunk):
        yield start, [p.read_bytes() for p in paths[start : start + chunk]], texts[start : start + chunk]


def ours(clip, paths: list[Path], texts: list[str], chunk: int, batch_size: int, workers: int) -> tuple[int, float]:
    """As ``clip_embeddings`` does for a step: one :func:`embed_parts` over every chunk (part)."""
    done, model_s = 0, 0.0
    for _, emb in embed_parts(clip, chunks(paths, texts, chunk), batch_size=batch_size, workers=workers):
        done += emb.image.shape[0]
        model_s += emb.seconds_model
    sync(clip.device)
    return done, model_s


def run(size: int = 64, *, chunk: int = 64, arch: str = "RN50", device: str = "cpu", batch_size: int = 16,
        threads: int = 1, loader_workers: int = 1, pool: int = 64, rounds: int = 1, **_: object) -> dict:
    """``size`` image–text pairs embedded in chunks of ``chunk``."""
    from cn_clip.clip import tokenize

    if device == "cpu":
        torch.set_num_threads(threads)
    clip = load_clip(ClipConfig(arch=arch, allow_random_weights=True, device=device, batch_size=batch_size))
    assert clip.random_weights
    texts = captions(size)
    with tempfile.TemporaryDirectory(prefix="danqing-embed-bench-") as tmp:
        distinct = make_jpegs(Path(tmp), min(size, pool), seed=0)
        paths = [distinct[i % len(distinct)] for i in range(size)]
        ours(clip, paths[:batch_size], texts[:batch_size], chunk, batch_size, loader_workers)  # warm-up, untimed

        # bare: every image preprocessed and every caption tokenised beforehand, on the device, untimed
        from PIL import Image

        prepared = []
        for p in distinct:
            with Image.open(p) as im:
                prepared.append(clip.preprocess(im.convert("RGB")))
        image_batches = [torch.stack([prepared[i % len(prepared)] for i in range(s, min(s + batch_size, size))])
                         .to(clip.device, clip.dtype) for s in range(0, size, batch_size)]
        token_batches = [tokenize(texts[s : s + batch_size], context_length=clip.context_length).to(clip.device)
                         for s in range(0, size, batch_size)]
        bare_forward(clip, image_batches[:1], token_batches[:1])  # warm-up, untimed

        our_times, bare_times, model_times = [], [], []
        with PeakRSS() as peak:
            for _ in range(max(1, rounds)):
                started = time.perf_counter()
                done, model_s = ours(clip, paths, texts, chunk, batch_size, loader_workers)
                model_times.append(model_s)
                our_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                bare_forward(clip, image_batches, token_batches)
                bare_times.append(time.perf_counter() - started)
    seconds, bare_s = min(our_times), min(bare_times)
    model_s = model_times[our_times.index(seconds)]  # the model's share of the round reported
    rate = size / seconds
    bare = comparison("bare forward pass (image + text) on prepared tensors", size, bare_s, rate)
    name = f"embedding_{arch}_{clip.device.type}"
    return stage_result(
        name, unit="pairs", items=done, seconds=seconds, peak=peak, comparisons=[bare],
        cores=1, targets=[target("≥ 90% of the bare forward pass", bare["ratio"], 0.9)],
        details={"arch": arch, "device": str(clip.device), "dtype": str(clip.dtype), "random_weights": True,
                 "batch_size": batch_size, "chunk": chunk, "torch_threads": torch.get_num_threads(),
                 "loader_workers": loader_workers, "model_seconds_inside_ours": model_s,
                 "ours_seconds_rounds": our_times, "bare_seconds_rounds": bare_times},
        notes=[RANDOM_NOTE, ("items/s are per device (CPU: torch threads + loader workers), not per core; peak RSS "
                             "excludes the loader processes")],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--arch", default="RN50", help="cn_clip architecture: RN50, ViT-B-16, ViT-L-14, ...")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument("--loader-workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    r = run(args.pairs, chunk=args.chunk, arch=args.arch, device=args.device, batch_size=args.batch_size,
            threads=args.threads, loader_workers=args.loader_workers, rounds=args.rounds)
    d, bare = r["details"], r["comparisons"][0]
    print(f"*** {RANDOM_NOTE} ***")
    print(f"{r['items']} pairs, {d['arch']} on {d['device']} ({d['dtype']}), batch {d['batch_size']}, "
          f"{d['torch_threads']} torch threads, {d['loader_workers']} loader worker(s)")
    print(f"embed_parts (decode, preprocess, tokenise in loader; forward): {r['items_per_s']:8.2f} pairs/s "
          f"({r['seconds']:.1f} s, of which model {d['model_seconds_inside_ours']:.1f} s)")
    print(f"bare forward pass on prepared tensors:                          {bare['items_per_s']:8.2f} pairs/s "
          f"({bare['seconds']:.1f} s)")
    print(f"ratio pipeline / bare forward:                                  {bare['ratio']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
