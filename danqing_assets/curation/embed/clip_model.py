"""Loading Chinese-CLIP (cn_clip): a local checkpoint, cn_clip's own download cache, or — only
when explicitly allowed — randomly initialised weights, announced loudly.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_WARNING = (
    "Chinese-CLIP is running on RANDOMLY INITIALISED weights: embeddings and CLIP scores are "
    "meaningless. Configure DANQING_CLIP_CHECKPOINT (or a cn_clip download cache) for real scores."
)


class ClipWeightsMissing(RuntimeError):
    """No checkpoint could be loaded and random weights were not allowed."""


@dataclass(frozen=True)
class ClipConfig:
    arch: str = "ViT-L-14"  # the paper's model; RN50 is the small one
    checkpoint: str | None = None  # a local cn_clip checkpoint ({"state_dict": ...})
    download_root: str | None = None  # cn_clip's cache: ``<root>/clip_cn_<arch>.pt``
    allow_random_weights: bool = False
    device: str = "auto"  # auto: CUDA when present
    batch_size: int = 64
    loader_workers: int = 1
    seed: int = 0  # random weights are seeded: the same run gives the same embeddings


@dataclass
class LoadedClip:
    model: torch.nn.Module
    preprocess: object  # PIL image -> tensor
    device: torch.device
    dtype: torch.dtype
    arch: str
    random_weights: bool
    source: str

    @property
    def context_length(self) -> int:
        return 52


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _structure(arch: str) -> tuple[str, int]:
    from cn_clip.clip.utils import _MODEL_INFO

    if arch not in _MODEL_INFO:
        raise ValueError(f"unknown Chinese-CLIP architecture {arch!r}; known: {sorted(_MODEL_INFO)}")
    info = _MODEL_INFO[arch]
    return info["struct"], info["input_resolution"]


def load_clip(config: ClipConfig) -> LoadedClip:
    from cn_clip.clip import load_from_name
    from cn_clip.clip.utils import create_model, image_transform

    device = pick_device(config.device)
    struct, resolution = _structure(config.arch)
    vision, text = struct.split("@")
    quiet = contextlib.redirect_stdout(io.StringIO())  # cn_clip prints its whole config
    if config.checkpoint:
        if not Path(config.checkpoint).is_file():
            raise ClipWeightsMissing(f"Chinese-CLIP checkpoint {config.checkpoint} does not exist")
        with quiet:
            model, preprocess = load_from_name(config.checkpoint, device=device, vision_model_name=vision,
                                               text_model_name=text, input_resolution=resolution)
        random_weights, source = False, f"checkpoint {config.checkpoint}"
    elif config.download_root and (Path(config.download_root) / f"clip_cn_{config.arch.lower()}.pt").is_file():
        with quiet:
            model, preprocess = load_from_name(config.arch, device=device, download_root=config.download_root)
        random_weights, source = False, f"cn_clip cache {config.download_root}"
    elif config.allow_random_weights:
        torch.manual_seed(config.seed)
        with quiet:
            model = create_model(struct)
        preprocess = image_transform(resolution)
        random_weights, source = True, "random initialisation"
        log.warning(RANDOM_WEIGHTS_WARNING)
    else:
        raise ClipWeightsMissing(
            f"no Chinese-CLIP {config.arch} weights: set DANQING_CLIP_CHECKPOINT to a local checkpoint, or "
            f"DANQING_CLIP_DOWNLOAD_ROOT to a directory holding clip_cn_{config.arch.lower()}.pt; "
            "DANQING_CLIP_ALLOW_RANDOM_WEIGHTS=true runs on random weights (meaningless scores, for testing only)"
        )
    # fp16 on GPU, fp32 on CPU (cn_clip keeps half weights; CPU half kernels are slow or missing)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedClip(model, preprocess, device, dtype, config.arch, random_weights, source)
