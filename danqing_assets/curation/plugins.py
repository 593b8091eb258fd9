"""Pluggable models named in settings as ``package.module:factory``."""

from __future__ import annotations

import importlib


def load_plugin(spec: str, model_path: str | None, protocol: type, what: str, needs: str):
    """Import ``module:factory``, call it with the model path, and check the result speaks ``protocol``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{what} {spec!r}: expected 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attribute)
    plugin = factory(model_path)
    if not isinstance(plugin, protocol):
        raise TypeError(f"{spec} built {type(plugin).__name__}, which has no {needs}")
    return plugin
