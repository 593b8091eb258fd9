"""The paper's visual filters, as pure functions over metric columns, and a pluggable NSFW classifier.

Free of Dagster. The decoder (:mod:`.decode`) measures each stored image; these
functions decide from the measurements alone, so a whole part is judged in one polars
expression and a changed threshold can be re-applied to stored metrics without
decoding anything again.

Columns read: ``orig_width``, ``orig_height`` (aspect ratio and shortest edge use the
ORIGINAL size, after the EXIF transposition: the paper filters what was published,
not our resized copy), ``pixel_std``, ``laplacian_var``, ``entropy`` (measured on the
stored image, see :mod:`.decode`). A row is dropped for the first failing check, in
this order:

================  ==============================================================
reason            when
================  ==============================================================
``aspect_ratio``  width / height outside [min_aspect, max_aspect] (1:3 .. 3:1, inclusive)
``too_small``     shortest edge < min_short_edge (101: the paper keeps edges > 100 px)
``low_pixel_std`` standard deviation of the grey values < min_pixel_std (flat images)
``blurry``        variance of the Laplacian < min_laplacian_var
``low_entropy``   entropy of the grey histogram < min_entropy (bits)
================  ==============================================================

A null measurement is not judged by its check (the decode step already dropped the
images it could not measure).

NSFW: none by default. Set ``DANQING_IMAGE_SAFETY_CLASSIFIER=package.module:factory``
(and optionally ``DANQING_IMAGE_SAFETY_MODEL_PATH``); the factory is called with the
model path and returns an object with ``unsafe_scores_from_pixels(images)`` (RGB PIL
images -> floats in [0, 1]) and, when it can score CLIP image embeddings the pipeline
already has, ``unsafe_scores_from_embeddings(embeddings)``. Images scoring at or above
``DANQING_IMAGE_SAFETY_THRESHOLD`` are dropped as ``unsafe_image``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import polars as pl

from ..plugins import load_plugin

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "METRIC_COLUMNS",
    "UNSAFE_REASON",
    "VISUAL_REASONS",
    "EmbeddingSafetyClassifier",
    "ImageSafetyClassifier",
    "VisualFilterConfig",
    "has_embedding_scores",
    "load_image_classifier",
    "safety_reject_reasons",
    "visual_reject_expr",
    "visual_reject_reasons",
]

VISUAL_REASONS = ("aspect_ratio", "too_small", "low_pixel_std", "blurry", "low_entropy")
METRIC_COLUMNS = ("orig_width", "orig_height", "pixel_std", "laplacian_var", "entropy")
UNSAFE_REASON = "unsafe_image"
_ASPECT_TOLERANCE = 1e-9  # 100x300 is exactly 1:3 and kept, whatever the float rounding


@dataclass(frozen=True)
class VisualFilterConfig:
    min_aspect: float = 1 / 3
    max_aspect: float = 3.0
    min_short_edge: int = 101
    min_pixel_std: float = 2.0
    min_laplacian_var: float = 1000.0
    min_entropy: float = 3.0

    @classmethod
    def from_settings(cls, settings) -> VisualFilterConfig:
        return cls(
            min_aspect=settings.image_min_aspect,
            max_aspect=settings.image_max_aspect,
            min_short_edge=settings.image_min_short_edge,
            min_pixel_std=settings.image_min_pixel_std,
            min_laplacian_var=settings.image_min_laplacian_var,
            min_entropy=settings.image_min_entropy,
        )

    def params(self) -> dict:
        return asdict(self)


def visual_reject_expr(config: VisualFilterConfig = VisualFilterConfig()) -> pl.Expr:
    """The reason to drop a row (String; null keeps it), as one polars expression."""
    width = pl.col("orig_width").cast(pl.Float64)
    height = pl.col("orig_height").cast(pl.Float64)
    aspect = width / height
    checks = [
        (aspect < config.min_aspect - _ASPECT_TOLERANCE) | (aspect > config.max_aspect + _ASPECT_TOLERANCE),
        pl.min_horizontal(pl.col("orig_width"), pl.col("orig_height")) < config.min_short_edge,
        pl.col("pixel_std") < config.min_pixel_std,
        pl.col("laplacian_var") < config.min_laplacian_var,
        pl.col("entropy") < config.min_entropy,
    ]
    expr = pl.when(checks[0].fill_null(False)).then(pl.lit(VISUAL_REASONS[0]))
    for check, reason in zip(checks[1:], VISUAL_REASONS[1:]):
        expr = expr.when(check.fill_null(False)).then(pl.lit(reason))
    return expr.otherwise(pl.lit(None, pl.String)).alias("reason")


def visual_reject_reasons(frame: pl.DataFrame, config: VisualFilterConfig = VisualFilterConfig()) -> pl.Series:
    """One entry per row: null keeps it, else the first failing reason of :data:`VISUAL_REASONS`."""
    if frame.height == 0:
        return pl.Series("reason", [], dtype=pl.String)
    return frame.select(visual_reject_expr(config)).to_series()


# --------------------------------------------------------------------------- NSFW


@runtime_checkable
class ImageSafetyClassifier(Protocol):
    def unsafe_scores_from_pixels(self, images: Sequence[Image.Image]) -> Sequence[float]: ...


@runtime_checkable
class EmbeddingSafetyClassifier(Protocol):
    """Optional second face of a classifier: scores from image embeddings (n x d float array)."""

    def unsafe_scores_from_embeddings(self, embeddings: np.ndarray) -> Sequence[float]: ...


def has_embedding_scores(classifier: object) -> bool:
    return isinstance(classifier, EmbeddingSafetyClassifier)


def load_image_classifier(spec: str, model_path: str | None) -> ImageSafetyClassifier:
    """Import ``module:factory`` and build the classifier from the model path."""
    return load_plugin(spec, model_path, ImageSafetyClassifier, "image safety classifier",
                       "unsafe_scores_from_pixels(images)")


def safety_reject_reasons(scores: Sequence[float], threshold: float = 0.5) -> pl.Series:
    """``unsafe_image`` where the score is at or above ``threshold``, else null."""
    values = pl.Series("score", [float(s) for s in scores], dtype=pl.Float64)
    return (
        pl.select(pl.when(pl.lit(values) >= threshold).then(pl.lit(UNSAFE_REASON)).otherwise(pl.lit(None, pl.String)))
        .to_series()
        .alias("reason")
    )
