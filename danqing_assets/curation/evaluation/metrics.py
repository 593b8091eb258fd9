"""Retrieval recall@k and zero-shot accuracy, as Chinese-CLIP computes them.

Recall@k (Chinese-CLIP's ``eval/evaluation.py``): the share of queries with at
least one correct candidate among their k most similar candidates, in percent.
Text→image queries are the texts (correct: the images they list); image→text
queries are the images that some text lists (correct: those texts), as
``transform_ir_annotation_to_tr.py`` builds them. Zero-shot accuracy: the share
of images whose own class is among the k classes most similar to the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_KS = (1, 5, 10)
ACCURACY_KS = (1, 5)
_CHUNK = 1024  # queries per block: a 5,000 × 30,000 similarity matrix never exists at once


def top_k(queries: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Indices of each query's k most similar candidates (dot product), most similar first.

    Equal scores keep the candidates' order (lower index first).
    """
    k = min(k, candidates.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], _CHUNK):
        scores = queries[start : start + _CHUNK] @ candidates.T
        for row, s in enumerate(scores):
            # all candidates scoring at least the k-th best, then a stable sort among them
            kth = np.partition(s, s.size - k)[s.size - k]
            pool = np.flatnonzero(s >= kth)
            out[start + row] = pool[np.argsort(-s[pool], kind="stable")][:k]
    return out


def recall_at_k(queries: np.ndarray, candidates: np.ndarray, relevant: Sequence[Sequence[int]],
                ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """Recall@k in percent; ``relevant[q]`` are the candidate indices that answer query q."""
    if len(relevant) != queries.shape[0]:
        raise ValueError(f"{queries.shape[0]} queries but {len(relevant)} ground-truth lists")
    if any(len(r) == 0 for r in relevant):
        raise ValueError("every query needs at least one correct candidate")
    if queries.shape[0] == 0:
        raise ValueError("no queries")
    ranked = top_k(queries, candidates, max(ks))
    hits = {k: 0 for k in ks}
    for row, answers in zip(ranked, relevant):
        answers = set(answers)
        first = next((rank for rank, c in enumerate(row) if c in answers), None)
        for k in ks:
            hits[k] += first is not None and first < k
    return {f"R@{k}": 100.0 * hits[k] / len(relevant) for k in ks}


def invert(text_images: Sequence[Sequence[int]], n_images: int) -> tuple[list[int], list[list[int]]]:
    """The image→text ground truth: images some text lists, each with the texts that list it."""
    texts_of: list[list[int]] = [[] for _ in range(n_images)]
    for t, images in enumerate(text_images):
        for i in images:
            texts_of[i].append(t)
    queried = [i for i in range(n_images) if texts_of[i]]
    return queried, [texts_of[i] for i in queried]


def retrieval_metrics(text_emb: np.ndarray, image_emb: np.ndarray, text_images: Sequence[Sequence[int]],
                      ks: Sequence[int] = RECALL_KS) -> dict:
    """Recall@k both ways and their mean (the "mean recall" that Chinese-CLIP and the paper report)."""
    t2i = recall_at_k(text_emb, image_emb, text_images, ks)
    queried, image_texts = invert(text_images, image_emb.shape[0])
    i2t = recall_at_k(image_emb[queried], text_emb, image_texts, ks)
    return {"text_to_image": t2i, "image_to_text": i2t,
            "mean_recall": float(np.mean(list(t2i.values()) + list(i2t.values())))}


def class_embeddings(prompt_emb: np.ndarray, n_classes: int) -> np.ndarray:
    """One classifier row per class: the mean of its prompts' (normalised) embeddings, normalised again.

    ``prompt_emb`` holds each class's prompts together: class 0's templates, then class 1's, ...
    """
    if prompt_emb.shape[0] % n_classes:
        raise ValueError(f"{prompt_emb.shape[0]} prompt embeddings do not split into {n_classes} classes")
    mean = prompt_emb.reshape(n_classes, -1, prompt_emb.shape[1]).mean(axis=1)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def zero_shot_accuracy(image_emb: np.ndarray, classifier: np.ndarray, labels: Sequence[int],
                       ks: Sequence[int] = ACCURACY_KS) -> dict[str, float]:
    """Top-k accuracy in percent; only k below the number of classes (top-k of k classes is always 100 %)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("no images")
    if labels.min() < 0 or labels.max() >= classifier.shape[0]:
        raise ValueError(f"labels must lie in [0, {classifier.shape[0]})")
    ks = [k for k in ks if k < classifier.shape[0]] or [1]
    ranked = top_k(image_emb, classifier, max(ks))
    return {f"top{k}": 100.0 * float(np.mean((ranked[:, :k] == labels[:, None]).any(axis=1))) for k in ks}
