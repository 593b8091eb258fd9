"""Chinese-CLIP as a Dagster resource: which model, where its weights come from, which device."""

from __future__ import annotations

import dagster as dg

from ..curation.embed.clip_model import ClipConfig, LoadedClip, load_clip
from ..settings import Settings, get_settings


class ClipModelResource(dg.ConfigurableResource):
    arch: str = "ViT-L-14"
    checkpoint: str | None = None
    download_root: str | None = None
    allow_random_weights: bool = False
    device: str = "auto"
    batch_size: int = 64
    loader_workers: int = 1

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ClipModelResource:
        settings = settings or get_settings()
        return cls(arch=settings.clip_arch, checkpoint=settings.clip_checkpoint, download_root=settings.clip_download_root,
                   allow_random_weights=settings.clip_allow_random_weights, device=settings.clip_device,
                   batch_size=settings.clip_batch_size, loader_workers=settings.clip_loader_workers)

    def load(self) -> LoadedClip:
        return load_clip(ClipConfig(arch=self.arch, checkpoint=self.checkpoint, download_root=self.download_root,
                                    allow_random_weights=self.allow_random_weights, device=self.device,
                                    batch_size=self.batch_size, loader_workers=self.loader_workers))
