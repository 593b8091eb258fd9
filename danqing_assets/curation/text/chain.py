"""Run the text stage over a batch: refine, then every filter in turn, counting each drop."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..image_links import pair_uid
from . import filters as f
from .lexicons import combined
from .refine import refine_captions
from .safety import load_text_classifier
from .tokens import word_counts

EXAMPLES_PER_REASON = 3


@dataclass(frozen=True)
class TextStageConfig:
    """Every threshold of the text stage; defaults are the paper's where it gives one."""

    min_words: int = 5
    max_words: int = 60
    min_han_ratio: float = 0.3
    min_langid_percent: int = 50
    max_unk_tokens: int = 5
    min_entropy_bits: float = 2.0
    domain_blocklist_file: Path | None = None
    generic_alts_file: Path | None = None
    sensitive_words_file: Path | None = None
    safety_classifier: str | None = None
    safety_model_path: str | None = None
    safety_threshold: float = 0.5


def build_filters(config: TextStageConfig) -> list[f.TextFilter]:
    """The filters in the order they run: cheap and specific first, so a drop names its best reason."""
    chain: list[f.TextFilter] = [
        f.EmptyText(),
        f.ExactDuplicates(),
        f.DomainBlocklist(combined("domain_blocklist", config.domain_blocklist_file)),
        f.Boilerplate(combined("generic_alts", config.generic_alts_file)),
        f.ChineseText(config.min_han_ratio, config.min_langid_percent),
        f.WordLength(config.min_words, config.max_words),
        f.HasNoun(),
        f.UnknownTokens(config.max_unk_tokens),
        f.InformationDensity(config.min_entropy_bits),
        f.SensitiveWords(combined("sensitive_words", config.sensitive_words_file)),
    ]
    if config.safety_classifier:
        classifier = load_text_classifier(config.safety_classifier, config.safety_model_path)
        chain.append(f.TextSafety(classifier, config.safety_threshold))
    return chain


@dataclass
class TextStageReport:
    """Rows in and out of every filter, drops by reason, and a few examples of each."""

    rows_in: int = 0
    rows_out: int = 0
    steps: dict[str, list[int]] = field(default_factory=dict)  # filter -> [rows in, rows out]
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=dict)
    seconds: Counter[str] = field(default_factory=Counter)  # wall time per step, refinement included

    def merge(self, other: TextStageReport) -> TextStageReport:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        for name, (rows_in, rows_out) in other.steps.items():
            step = self.steps.setdefault(name, [0, 0])
            step[0] += rows_in
            step[1] += rows_out
        self.reasons.update(other.reasons)
        self.seconds.update(other.seconds)
        for reason, rows in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(rows[: EXAMPLES_PER_REASON - len(mine)])
        return self

    def to_dict(self) -> dict:
        # steps as a list: stored JSON sorts object keys, and the order is the funnel
        steps = [[name, rows_in, rows_out] for name, (rows_in, rows_out) in self.steps.items()]
        return {"rows_in": self.rows_in, "rows_out": self.rows_out, "steps": steps,
                "reasons": dict(sorted(self.reasons.items())), "examples": self.examples,
                "seconds": {k: round(v, 4) for k, v in self.seconds.items()}}


def run_text_stage(raw: pl.DataFrame, chain: list[f.TextFilter]) -> tuple[pl.DataFrame, pl.DataFrame, TextStageReport]:
    """(kept pairs, rejected pairs with their reason, report) for one batch of raw pairs."""
    report = TextStageReport(rows_in=raw.height)
    started = time.perf_counter()
    current = raw.rename({"uid": "raw_uid"}).with_columns(text=refine_captions(raw["alt_text"]))
    report.seconds["refine"] += time.perf_counter() - started
    rejected: list[pl.DataFrame] = []
    for text_filter in chain:
        started = time.perf_counter()
        rows_in = current.height
        reasons = text_filter.reasons(current) if rows_in else pl.Series([], dtype=pl.String)
        dropped = reasons.is_not_null()
        if dropped.any():
            gone = current.filter(dropped).with_columns(filter=pl.lit(text_filter.name), reason=reasons.filter(dropped))
            rejected.append(gone)
            report.reasons.update(gone["reason"].to_list())
            for row in gone.select("reason", "alt_text", "text", "url").iter_rows(named=True):
                examples = report.examples.setdefault(row.pop("reason"), [])
                if len(examples) < EXAMPLES_PER_REASON:
                    examples.append(row)
            current = current.filter(~dropped)
        report.steps[text_filter.name] = [rows_in, current.height]
        report.seconds[text_filter.name] += time.perf_counter() - started
    started = time.perf_counter()
    kept = current.with_columns(
        uid=pl.Series([pair_uid(u, t) for u, t in zip(current["url"], current["text"])], dtype=pl.String),
        word_count=pl.Series(word_counts(current["text"].to_list()), dtype=pl.Int32),
    )
    report.rows_out = kept.height
    report.seconds["annotate"] += time.perf_counter() - started
    rejects = pl.concat(rejected) if rejected else current.clear().with_columns(filter=pl.lit(""), reason=pl.lit(""))
    return kept, rejects, report
