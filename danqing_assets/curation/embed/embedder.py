"""Embed image–text pairs with Chinese-CLIP: L2-normalised, stored as float16, cosine score per pair.

Images arrive as encoded bytes. Loader processes decode and preprocess them, and tokenise the
captions, so the main process only runs the model. The processes start once per call of
:func:`embed_parts` and serve every part of a step, a few batches ahead of the model, across part
boundaries: no fork per part, and the model does not wait for a part's first batch.

Why not torch's ``DataLoader``: its workers are forked per loader, i.e. per part (the overhead measured
in the embedding benchmark: 0.85 of the bare forward pass with it), and its iterable form would move the
object-store reads of the next part into the workers. A ``ProcessPoolExecutor`` fed batch by batch keeps
the reads in the step and the workers alive across parts; outputs are identical (test_embedder.py).
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .clip_model import LoadedClip

log = logging.getLogger(__name__)

Label = TypeVar("Label")
PREFETCH_PER_WORKER = 2  # batches prepared ahead per loader process, as DataLoader's prefetch_factor


def _decoded(blob: bytes, preprocess) -> torch.Tensor:
    with Image.open(io.BytesIO(blob)) as image:
        return preprocess(image.convert("RGB"))


class _EncodedImages(Dataset):
    def __init__(self, blobs: Sequence[bytes], preprocess) -> None:
        self.blobs, self.preprocess = blobs, preprocess

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> torch.Tensor:
        return _decoded(self.blobs[i], self.preprocess)


@dataclass
class Embeddings:
    image: np.ndarray  # n x d float16, L2-normalised
    text: np.ndarray  # n x d float16, L2-normalised
    score: np.ndarray  # n float32: cosine of image and text embedding
    seconds_model: float
    seconds_total: float


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# --- loader tasks: run in the loader processes (or in-process in a daemonic process) -------------
def _image_batch(blobs: Sequence[bytes], preprocess) -> torch.Tensor:
    return torch.stack([_decoded(blob, preprocess) for blob in blobs])


def _token_batch(texts: Sequence[str], context_length: int) -> torch.Tensor:
    from cn_clip.clip import tokenize

    return tokenize(list(texts), context_length=context_length)


def _pinned(prepared: Future) -> torch.Tensor:
    return prepared.result().pin_memory()


def _done(task, *args) -> Future:
    future: Future = Future()
    try:
        future.set_result(task(*args))
    except Exception as error:  # noqa: BLE001 - raised again where the result is read, as from a process
        future.set_exception(error)
    return future


def _loader_workers(workers: int) -> int:
    if workers and multiprocessing.current_process().daemon:
        # A daemonic process (e.g. a Celery prefork child) may not start loader workers: decode in-process.
        log.warning("embedding in a daemonic process: image decoding runs in-process (num_workers=0)")
        return 0
    return workers


class _Loader:
    """Prepares batches (image tensor, token ids) in ``workers`` processes; in-process when 0."""

    def __init__(self, clip: LoadedClip, workers: int, stack: ExitStack) -> None:
        self.preprocess, self.context_length = clip.preprocess, clip.context_length
        # one torch thread per loader process, as in DataLoader workers: the model keeps its cores
        self.pool: Executor | None = stack.enter_context(ProcessPoolExecutor(
            workers, initializer=torch.set_num_threads, initargs=(1,))) if workers else None
        # on CUDA a thread pins the prepared batches ahead of the model, as DataLoader's pin_memory does
        self.pinner = stack.enter_context(ThreadPoolExecutor(1)) if workers and clip.device.type == "cuda" else None
        self.ahead = PREFETCH_PER_WORKER * workers  # in-process: each batch prepared just before its turn

    def submit(self, task, *args) -> Future:
        if self.pool is None:
            return _done(task, *args)
        future = self.pool.submit(task, *args)
        return self.pinner.submit(_pinned, future) if self.pinner else future

    def prepare(self, batch: _Batch) -> tuple[Future, Future]:
        """Tokens first: the text tower can run while the images of the same batch still decode."""
        return (self.submit(_token_batch, batch.texts, self.context_length),
                self.submit(_image_batch, batch.images, self.preprocess))


# --- parts and batches -----------------------------------------------------------------------------
@dataclass
class _Part:
    """One part's embeddings, filled batch by batch."""

    label: object
    image: np.ndarray
    text: np.ndarray
    score: np.ndarray
    seconds_model: float = 0.0

    @classmethod
    def empty(cls, label: object, rows: int, dim: int) -> _Part:
        return cls(label, np.empty((rows, dim), np.float16), np.empty((rows, dim), np.float16),
                   np.empty(rows, np.float32))


@dataclass
class _Batch:
    part: _Part
    start: int
    images: Sequence[bytes]
    texts: Sequence[str]
    last: bool = False  # the last batch of its part


def _batches(parts: Iterable[tuple[Label, Sequence[bytes], Sequence[str]]], batch_size: int,
             dim: int) -> Iterator[_Batch]:
    """Every part cut into batches, lazily: a part is read only when the loader reaches it."""
    for label, images, texts in parts:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts in part {label!r}")
        part = _Part.empty(label, len(images), dim)
        if len(images) == 0:
            yield _Batch(part, 0, [], [], last=True)
        for start in range(0, len(images), batch_size):
            end = start + batch_size
            yield _Batch(part, start, images[start:end], texts[start:end], last=end >= len(images))


def _prepared(loader: _Loader, batches: Iterator[_Batch]) -> Iterator[tuple[_Batch, Future | None, Future | None]]:
    """Batches in order with their (tokens, images) futures, ``loader.ahead`` batches submitted ahead."""
    pending: deque = deque()
    for batch in batches:
        pending.append((batch, *(loader.prepare(batch) if len(batch.images) else (None, None))))
        if len(pending) > loader.ahead:
            yield pending.popleft()
    yield from pending


# --- the model -------------------------------------------------------------------------------------
def _embed_batch(clip: LoadedClip, batch: _Batch, tokens: Future, images: Future) -> None:
    """Both towers on one batch, written into its part's float16 rows; only the model's time is counted."""
    token_ids = tokens.result()
    started = time.perf_counter()
    text = _normalise(clip.model.encode_text(token_ids.to(clip.device, non_blocking=True)).float()).cpu()
    model_seconds = time.perf_counter() - started
    pixels = images.result()
    started = time.perf_counter()
    image = _normalise(clip.model.encode_image(pixels.to(clip.device, clip.dtype, non_blocking=True)).float()).cpu()
    rows = slice(batch.start, batch.start + image.shape[0])
    batch.part.image[rows], batch.part.text[rows] = image.numpy(), text.numpy()
    batch.part.score[rows] = (image * text).sum(dim=-1).numpy()
    batch.part.seconds_model += model_seconds + time.perf_counter() - started


@torch.inference_mode()
def embed_parts(clip: LoadedClip, parts: Iterable[tuple[Label, Sequence[bytes], Sequence[str]]], *,
                batch_size: int = 64, workers: int = 1) -> Iterator[tuple[Label, Embeddings]]:
    """Each part's embeddings, in order, as ``(label, embeddings)``; ``parts`` yields ``(label, images, texts)``.

    The same loader processes serve every part; the next part is read from ``parts`` while the model
    still embeds the end of the current one. ``seconds_total`` of a part is the wall time from the
    previous part's hand-over to its own (reading the next part's images included).
    """
    dim = clip.model.text_projection.shape[1]
    with ExitStack() as stack:
        loader = _Loader(clip, _loader_workers(workers), stack)
        clock = time.perf_counter()
        for batch, tokens, images in _prepared(loader, _batches(parts, batch_size, dim)):
            if len(batch.images):
                _embed_batch(clip, batch, tokens, images)
            if batch.last:
                part = batch.part
                yield part.label, Embeddings(part.image, part.text, part.score, part.seconds_model,
                                             time.perf_counter() - clock)
                clock = time.perf_counter()


def embed_pairs(clip: LoadedClip, images: Sequence[bytes], texts: Sequence[str], *, batch_size: int = 64,
                workers: int = 1) -> Embeddings:
    """One set of pairs; a step with several parts should use :func:`embed_parts` (loader processes start once)."""
    ((_, embeddings),) = embed_parts(clip, [(None, images, texts)], batch_size=batch_size, workers=workers)
    return embeddings


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
        except Exception as error:  # any decoder error becomes one clear message
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
