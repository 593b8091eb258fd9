"""Embed image–text pairs with Chinese-CLIP: L2-normalised, stored as float16, cosine score per pair.

Images arrive as encoded bytes; a torch DataLoader decodes and preprocesses them
in worker processes so the model never waits for Pillow.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .clip_model import LoadedClip

log = logging.getLogger(__name__)


class _EncodedImages(Dataset):
    def __init__(self, blobs: Sequence[bytes], preprocess) -> None:
        self.blobs, self.preprocess = blobs, preprocess

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(io.BytesIO(self.blobs[i])) as image:
            return self.preprocess(image.convert("RGB"))


@dataclass
class Embeddings:
    image: np.ndarray  # n x d float16, L2-normalised
    text: np.ndarray  # n x d float16, L2-normalised
    score: np.ndarray  # n float32: cosine of image and text embedding
    seconds_model: float
    seconds_total: float


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.inference_mode()
def embed_pairs(clip: LoadedClip, images: Sequence[bytes], texts: Sequence[str], *, batch_size: int = 64,
                workers: int = 1) -> Embeddings:
    from cn_clip.clip import tokenize

    started = time.perf_counter()
    model_seconds = 0.0
    if workers and multiprocessing.current_process().daemon:
        # A daemonic process (e.g. a Celery prefork child) may not start loader workers: decode in-process.
        log.warning("embedding in a daemonic process: image decoding runs in-process (num_workers=0)")
        workers = 0
    loader = DataLoader(_EncodedImages(images, clip.preprocess), batch_size=batch_size, num_workers=workers,
                        pin_memory=clip.device.type == "cuda", persistent_workers=False)
    image_parts = []
    for batch in loader:
        t = time.perf_counter()
        image_parts.append(_normalise(clip.model.encode_image(batch.to(clip.device, clip.dtype, non_blocking=True)).float()).cpu())
        model_seconds += time.perf_counter() - t
    text_parts = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenize(list(texts[start : start + batch_size]), context_length=clip.context_length).to(clip.device)
        t = time.perf_counter()
        text_parts.append(_normalise(clip.model.encode_text(tokens).float()).cpu())
        model_seconds += time.perf_counter() - t
    dim = clip.model.text_projection.shape[1]
    image = torch.cat(image_parts) if image_parts else torch.zeros((0, dim))
    text = torch.cat(text_parts) if text_parts else torch.zeros((0, dim))
    score = (image * text).sum(dim=-1).numpy().astype(np.float32)
    return Embeddings(image.numpy().astype(np.float16), text.numpy().astype(np.float16), score, model_seconds,
                      time.perf_counter() - started)


def to_binary(matrix: np.ndarray) -> list[bytes]:
    """Rows of a float16 matrix as bytes, for a parquet Binary column."""
    return [row.tobytes() for row in np.ascontiguousarray(matrix, dtype=np.float16)]


def from_binary(values: Sequence[bytes], dim: int | None = None) -> np.ndarray:
    """The float16 matrix back from a Binary column."""
    if not values:
        return np.zeros((0, dim or 0), dtype=np.float16)
    return np.frombuffer(b"".join(values), dtype=np.float16).reshape(len(values), -1)


class _NamedImages(_EncodedImages):
    """Encoded images that name the one that fails to decode (benchmark sets come from outside)."""

    def __init__(self, blobs: Sequence[bytes], preprocess, names: Sequence[str]) -> None:
        super().__init__(blobs, preprocess)
        self.names = names

    def __getitem__(self, i: int) -> torch.Tensor:
        try:
            return super().__getitem__(i)
        except Exception as error:  # noqa: BLE001 - any decoder error becomes one clear message
            raise ValueError(f"image {self.names[i]!r} cannot be decoded: {error}") from error


@torch.inference_mode()
def encode_images(clip: LoadedClip, images: Sequence[bytes], *, names: Sequence[str] | None = None,
                  batch_size: int = 64, workers: int = 1) -> np.ndarray:
    """Image embeddings alone (n x d float32, L2-normalised); ``images`` may be any lazy sequence of bytes."""
    dataset = _NamedImages(images, clip.preprocess, names if names is not None else [str(i) for i in range(len(images))])
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=clip.device.type == "cuda")
    parts = [_normalise(clip.model.encode_image(batch.to(clip.device, clip.dtype, non_blocking=True)).float()).cpu()
             for batch in loader]
    return torch.cat(parts).numpy() if parts else np.zeros((0, clip.model.text_projection.shape[1]), np.float32)


@torch.inference_mode()
def encode_texts(clip: LoadedClip, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Text embeddings alone (n x d float32, L2-normalised), e.g. zero-shot prompts or retrieval queries."""
    from cn_clip.clip import tokenize

    parts = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenize(list(texts[start : start + batch_size]), context_length=clip.context_length).to(clip.device)
        parts.append(_normalise(clip.model.encode_text(tokens).float()).cpu())
    return torch.cat(parts).numpy() if parts else np.zeros((0, clip.model.text_projection.shape[1]), np.float32)
