"""The one place for settings.

Every value can be set with an environment variable named ``DANQING_<FIELD>``
(for example ``DANQING_STORAGE_KIND=s3``). Assets and resources read settings
through :func:`get_settings`, so a test can change the environment and call
``get_settings.cache_clear()``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

COMMON_CRAWL_DATA_URL = "https://data.commoncrawl.org/"
COMMON_CRAWL_COLLINFO_URL = "https://index.commoncrawl.org/collinfo.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DANQING_", extra="ignore")

    # --- where things live -------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"),
        description="Working directory for the local object store, the sample crawl and scratch files.",
    )
    storage_kind: Literal["local", "s3"] = "local"
    storage_root: Path | None = Field(
        default=None, description="Local object store root; default <data_dir>/store."
    )
    s3_endpoint: str = "127.0.0.1:9000"
    s3_bucket: str = "danqing"
    s3_prefix: str = ""
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_secure: bool = False
    s3_region: str = "us-east-1"

    # --- Common Crawl -------------------------------------------------------
    cc_base_url: str = Field(
        default=COMMON_CRAWL_DATA_URL,
        description="Base of the crawl data: an http(s) URL or a local directory holding crawl-data/.",
    )
    cc_collinfo_url: str | None = Field(
        default=None,
        description="Crawl list; default: Common Crawl's index server for the public endpoint, "
        "else <cc_base_url>/collinfo.json.",
    )
    cc_http_timeout_s: float = 60.0
    cc_http_retries: int = 6
    cc_http_backoff_s: float = 1.0
    warc_files_per_snapshot: int = Field(
        default=0, ge=0, description="How many WARC files of a snapshot one run takes (0 = all)."
    )
    warc_files_per_shard: int = Field(default=1, ge=1, description="WARC files processed by one step.")

    # --- extraction ---------------------------------------------------------
    warc_reader: Literal["fastwarc", "warcio"] = "fastwarc"
    page_languages: str = Field(
        default="zho",
        description="Comma-separated ISO 639-3 codes from Common Crawl's languages-cld2 tag; "
        "pages tagged with none of them are skipped. Empty: parse every page.",
    )
    max_page_bytes: int = Field(default=5 * 1024 * 1024, description="Larger HTML bodies are skipped.")
    max_images_per_page: int = Field(default=1000, description="Further <img> tags on a page are ignored.")
    max_alt_chars: int = Field(default=2000, description="Longer alt/title texts are dropped.")
    max_url_chars: int = Field(default=2048, description="Longer image URLs are dropped.")

    # --- text stage (defaults: the paper's where it gives one) --------------------------
    text_min_words: int = Field(default=5, description="Fewest jieba words a caption may have.")
    text_max_words: int = Field(default=60, description="Most jieba words a caption may have.")
    text_min_han_ratio: float = Field(default=0.3, description="Least share of Han characters among letters.")
    text_min_langid_percent: int = Field(default=50, description="CLD2 must cover this % of a text to call it non-Chinese.")
    text_max_unk_tokens: int = Field(default=5, description="Most [UNK] tokens under Chinese-CLIP's tokenizer.")
    text_min_entropy_bits: float = Field(default=2.0, description="Least character entropy (bits) of a caption.")
    domain_blocklist_file: Path | None = Field(default=None, description="Extra blocked domains, one per line.")
    generic_alts_file: Path | None = Field(default=None, description="Extra generic alts, one per line.")
    sensitive_words_file: Path | None = Field(default=None, description="Extra sensitive words, one per line.")
    text_safety_classifier: str | None = Field(default=None, description="'package.module:factory' of a text classifier.")
    text_safety_model_path: str | None = Field(default=None, description="Model path handed to that factory.")
    text_safety_threshold: float = Field(default=0.5, description="Unsafe score from which a caption is dropped.")

    # --- image download ------------------------------------------------------------
    download_user_agent: str = Field(
        default="danqing-assets/0.1 (image-text dataset curation; honours robots.txt and X-Robots-Tag noai)",
        description="User-Agent of every image and robots.txt request.",
    )
    download_concurrency: int = Field(default=64, description="Downloads in flight per worker.")
    download_per_host_concurrency: int = Field(default=4, description="Downloads in flight per host.")
    download_timeout_s: float = Field(default=30.0, description="Whole-download deadline per image.")
    download_retries: int = Field(default=3, description="Retries of 429/5xx/timeouts per image.")
    download_max_bytes: int = Field(default=20 * 1024 * 1024, description="Larger bodies are cut off and dropped.")
    download_max_redirects: int = 5
    download_respect_robots: bool = True
    download_urls_per_shard: int = Field(default=2000, description="Image URLs per download step.")
    network_allowlist: str = Field(
        default="",
        description="Comma-separated IPs, CIDRs or ip:port the SSRF guard admits although private or loopback.",
    )
    host_overrides: str = Field(
        default="",
        description="Comma-separated host=ip:port pairs (curl --resolve style); '*.suffix' matches subdomains.",
    )

    # --- image decoding and visual filters (defaults: the paper's) -----------------------
    image_max_pixels: int = Field(default=64_000_000, description="Larger images are refused as decompression bombs.")
    image_max_side: int = Field(default=1024, description="Stored images are resized to this longest side.")
    image_jpeg_quality: int = 90
    image_min_aspect: float = Field(default=1 / 3, description="Least width/height.")
    image_max_aspect: float = Field(default=3.0, description="Most width/height.")
    image_min_short_edge: int = Field(default=101, description="Shortest edge must be at least this (paper: > 100 px).")
    image_min_pixel_std: float = Field(default=2.0, description="Least standard deviation of grey values.")
    image_min_laplacian_var: float = Field(default=1000.0, description="Least variance of the Laplacian (blur).")
    image_min_entropy: float = Field(default=3.0, description="Least entropy (bits) of the grey histogram.")
    phash_max_distance: int = Field(default=4, description="Hamming distance within which pHashes are near-duplicates.")
    image_safety_classifier: str | None = Field(default=None, description="'package.module:factory' of an NSFW classifier.")
    image_safety_model_path: str | None = None
    image_safety_threshold: float = 0.5

    # --- Chinese-CLIP (the only GPU stage) --------------------------------------------
    clip_arch: str = Field(default="ViT-L-14", description="cn_clip architecture (paper: ViT-L-14; small: RN50).")
    clip_checkpoint: str | None = Field(default=None, description="Local cn_clip checkpoint file.")
    clip_download_root: str | None = Field(default=None, description="cn_clip's download cache directory.")
    clip_allow_random_weights: bool = Field(default=False, description="Run on random weights (testing only).")
    clip_device: str = Field(default="auto", description="auto, cpu, cuda, cuda:1, ...")
    clip_batch_size: int = 64
    clip_loader_workers: int = Field(default=1, description="Processes decoding images for the model.")
    clip_score_scale: float = Field(
        default=4.0, description="The band is applied to cosine × this scale (see README: the paper's scale)."
    )
    clip_band_min: float = Field(default=1.06, description="Lowest scaled score kept (paper: 1.06).")
    clip_band_max: float = Field(default=1.24, description="Highest scaled score kept (paper: 1.24).")
    semantic_max_distance: float = Field(
        default=0.1, description="Cosine distance of semantic near-duplicates (paper: β = 0.1); negative: off."
    )

    # --- execution --------------------------------------------------------------------------
    executor: Literal["multiprocess", "k8s"] = Field(
        default="multiprocess",
        description="Default executor of the code location: 'multiprocess' (local; one GPU step at a time) or 'k8s' "
        "(dagster-k8s job executor: one pod per step, GPU steps request nvidia.com/gpu; needs dagster-k8s, "
        "installed by docker/requirements-deploy.txt). Celery runs through job curation_celery.",
    )

    # --- release ------------------------------------------------------------------------
    release_version: str = Field(
        default="v1", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Release path component: releases/<version>/<snapshot>/…; bump it for a new public version.",
    )
    release_shard_samples: int = Field(default=10_000, ge=1, description="Samples per WebDataset tar shard of a release.")
    takedown_list_path: Path | None = Field(
        default=None,
        description="Takedown list: one entry per line, 'url <URL>', 'domain <host>', 'sha256 <hex>' or 'phash <16 hex>'; "
        "'#' starts a comment. Default: none (an empty list).",
    )
    release_licence_notice: str = Field(
        default="The images and texts remain under the licences of their owners; this release lists where they were "
        "found (page URL, Common Crawl WARC record) and offers them for research on image-text models only. To have an "
        "item removed, ask for a takedown: it is removed from every release without re-downloading anything.",
        description="Licence notice printed in the dataset card.",
    )

    # --- Celery executor (job curation_celery) ---------------------------------
    celery_broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Broker the Celery workers listen on.")
    celery_backend_url: str = Field(default="redis://127.0.0.1:6379/1", description="Where Celery keeps step results.")

    # --- dataset analysis and model evaluation (benchmark_results) ------------------
    benchmark_sets_dir: Path | None = Field(
        default=None,
        description="Benchmark sets in Chinese-CLIP format (Flickr30K-CN, COCO-CN, MUGE retrieval: <split>_texts.jsonl + "
        "<split>_imgs.tsv; zero-shot: label_cn.txt + test/<class id>/), the directory itself or one per subdirectory. "
        "Default: a tiny SMOKE-TEST set built from the snapshot's own curated pairs.",
    )
    benchmark_retrieval_split: str = Field(
        default="auto", description="Split of retrieval sets: test, valid, ...; auto: test if labelled, else valid."
    )
    benchmark_prompt_templates: Literal["auto", "openai", "normal"] = Field(
        default="auto",
        description="Zero-shot prompts (cn_clip's): openai (Chinese-CLIP's default set), normal ('{}的图片'); "
        "auto: openai for configured sets, normal for the smoke set.",
    )
    benchmark_smoke_pairs: int = Field(default=32, ge=2, description="Pairs in the smoke-test set built from a snapshot.")
    analysis_kmeans_clusters: int = Field(
        default=10_000, ge=1, description="k-means clusters for semantic balance (paper: 10K; fewer on small snapshots)."
    )

    # --- automation: new crawls, incremental updates, step retries (danqing_assets/sensors.py, retries.py) ---
    new_crawls_from_year: int = Field(
        default=0, ge=0, description="The new-crawl sensor adds only crawls of this (first) year or later; 0: any year."
    )
    new_crawls_newest: int = Field(
        default=1, ge=0, description="The new-crawl sensor considers only the newest N crawls of the list; 0: all of them."
    )
    new_crawl_sensor_running: bool = Field(
        default=False, description="Start the new-crawl sensor with the code location (else switch it on in the UI)."
    )
    new_crawl_interval_s: int = Field(default=3600, ge=30, description="How often the new-crawl sensor reads the crawl list.")
    new_crawl_fetch_attempts: int = Field(
        default=2, ge=1, description="Attempts to read the crawl list within one sensor tick (the next tick tries again)."
    )
    automation_interval_s: int = Field(default=30, ge=5, description="How often automation conditions are evaluated.")
    step_max_retries: int = Field(default=3, ge=0, description="Retries of a failed I/O step (exponential backoff).")
    step_retry_delay_s: float = Field(default=2.0, ge=0, description="Wait before a step's first retry; doubles each time.")

    # --- the embedded demo ----------------------------------------------------
    sample_host_suffix: str = Field(
        default=".danqing-sample.test",
        description="Hosts of the bundled sample crawl; the demo resolves them to its local server.",
    )

    @property
    def resolved_storage_root(self) -> Path:
        return (self.storage_root or self.data_dir / "store").resolve()

    @property
    def resolved_collinfo_url(self) -> str:
        if self.cc_collinfo_url:
            return self.cc_collinfo_url
        if self.cc_base_url.rstrip("/") == COMMON_CRAWL_DATA_URL.rstrip("/"):
            return COMMON_CRAWL_COLLINFO_URL
        return self.cc_base_url.rstrip("/") + "/collinfo.json"

    @property
    def page_language_codes(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.page_languages.split(",") if c.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
