"""Chinese-CLIP on benchmark sets: retrieval recall@1/5/10 both ways, zero-shot top-1/top-5 accuracy."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..embed.clip_model import LoadedClip
from ..embed.embedder import encode_images, encode_texts
from .benchmark_sets import RetrievalSet, ZeroShotSet, discover_sets, read_retrieval_set, read_zeroshot_set
from .metrics import class_embeddings, retrieval_metrics, zero_shot_accuracy


def prompt_templates(name: str) -> list[Callable[[str], str]]:
    """cn_clip's Chinese prompt templates: ``openai`` (its default for zero-shot sets) or ``normal`` ('{}的图片')."""
    from cn_clip.eval.cvinw_zeroshot_templates import normal_templates, openai_templates

    templates = {"openai": openai_templates, "normal": normal_templates}
    if name not in templates:
        raise ValueError(f"unknown prompt templates {name!r}; known: {sorted(templates)}")
    return templates[name]


def evaluate_retrieval(clip: LoadedClip, data: RetrievalSet, *, batch_size: int = 64, workers: int = 1) -> dict:
    started = time.perf_counter()
    images = encode_images(clip, data.images, names=data.image_ids, batch_size=batch_size, workers=workers)
    texts = encode_texts(clip, data.texts, batch_size=batch_size)
    metrics = retrieval_metrics(texts, images, data.text_images)
    return {"set": data.name, "kind": "retrieval", "split": data.split, "texts": len(data.texts),
            "images": len(data.image_ids), "skipped": dict(data.skipped), **metrics,
            "seconds": round(time.perf_counter() - started, 2)}


def evaluate_zeroshot(clip: LoadedClip, data: ZeroShotSet, templates: list[Callable[[str], str]], *,
                      batch_size: int = 64, workers: int = 1) -> dict:
    started = time.perf_counter()
    prompts = [template(name) for name in data.classnames for template in templates]
    classifier = class_embeddings(encode_texts(clip, prompts, batch_size=batch_size), len(data.classnames))
    images = encode_images(clip, data.images, names=data.image_names, batch_size=batch_size, workers=workers)
    return {"set": data.name, "kind": "zero_shot", "split": data.split, "classes": len(data.classnames),
            "images": len(data.labels), "templates": len(templates), "skipped": dict(data.skipped),
            **zero_shot_accuracy(images, classifier, data.labels), "seconds": round(time.perf_counter() - started, 2)}


def evaluate_sets(clip: LoadedClip, root: Path, *, split: str = "auto", templates: str = "openai",
                  batch_size: int = 64, workers: int = 1) -> list[dict]:
    """Every set under ``root`` (see :func:`discover_sets`), in name order."""
    results = []
    for kind, directory in discover_sets(root):
        if kind == "retrieval":
            results.append(evaluate_retrieval(clip, read_retrieval_set(directory, split), batch_size=batch_size,
                                              workers=workers))
        else:
            results.append(evaluate_zeroshot(clip, read_zeroshot_set(directory), prompt_templates(templates),
                                             batch_size=batch_size, workers=workers))
    return results
