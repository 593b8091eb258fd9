"""A pluggable text-safety classifier: none by default, any local model when configured.

Set ``DANQING_TEXT_SAFETY_CLASSIFIER=package.module:factory`` and optionally
``DANQING_TEXT_SAFETY_MODEL_PATH``; the factory is called with the model path
and returns an object with ``unsafe_scores(texts) -> sequence of floats in [0, 1]``.
Captions scoring at or above ``DANQING_TEXT_SAFETY_THRESHOLD`` are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..plugins import load_plugin


@runtime_checkable
class TextSafetyClassifier(Protocol):
    def unsafe_scores(self, texts: Sequence[str]) -> Sequence[float]: ...


def load_text_classifier(spec: str, model_path: str | None) -> TextSafetyClassifier:
    """Import ``module:factory`` and build the classifier from the model path."""
    return load_plugin(spec, model_path, TextSafetyClassifier, "text safety classifier", "unsafe_scores(texts)")
