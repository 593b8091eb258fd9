"""The text filters. Each one looks at a batch of pairs and names, per row, the reason
to drop it (or null to keep it). Filters hold no Dagster code; :mod:`.chain` runs them.

Columns a filter may read: ``url`` (image), ``page_url``, ``alt_text`` (as found on
the page) and ``text`` (the refined caption).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import polars as pl

from .language import CHINESE_CLD2_CODES, cld2_language, script_counts
from .safety import TextSafetyClassifier
from .tokens import char_entropy, has_noun, unk_counts, word_count

KEEP = None


class TextFilter(ABC):
    name: ClassVar[str]

    @abstractmethod
    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        """One entry per row: null keeps the row, a string is the reason to drop it."""

    def params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def _where(mask: pl.Series, reason: str) -> pl.Series:
    return pl.select(pl.when(pl.lit(mask)).then(pl.lit(reason)).otherwise(pl.lit(None, pl.String))).to_series()


def _python_reasons(values: Sequence[str], decide) -> pl.Series:
    return pl.Series("reason", [decide(v) for v in values], dtype=pl.String)


class EmptyText(TextFilter):
    name = "empty_text"

    def reasons(self, frame):
        return _where(frame["text"].str.len_chars() == 0, "empty_after_refinement")


class ExactDuplicates(TextFilter):
    """(image URL, refined text) seen before in this snapshot: earlier parts are remembered."""

    name = "exact_duplicate"

    def __init__(self) -> None:
        self._seen = pl.Series("key", [], dtype=pl.UInt64)

    def reasons(self, frame):
        keys = frame.select(pl.struct("url", "text").hash(seed=0)).to_series()
        duplicate = keys.is_in(self._seen.implode()) | ~keys.is_first_distinct()
        self._seen = pl.concat([self._seen, keys.filter(~duplicate)])
        return _where(duplicate, "exact_duplicate")


def host_of(urls: pl.Series) -> pl.Series:
    return urls.str.extract(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^/:?#]+)", 1).str.to_lowercase().fill_null("")


class DomainBlocklist(TextFilter):
    """The image's or the page's host is a blocked domain or under one."""

    name = "domain_blocklist"

    def __init__(self, domains: Sequence[str]) -> None:
        self.domains = sorted({d.strip().lower().lstrip(".") for d in domains if d.strip()})
        alternatives = "|".join(re.escape(d) for d in self.domains)
        self._pattern = f"(?:^|\\.)(?:{alternatives})$" if self.domains else None

    def reasons(self, frame):
        if self._pattern is None:
            return pl.Series("reason", [None] * frame.height, dtype=pl.String)
        blocked = host_of(frame["url"]).str.contains(self._pattern) | host_of(frame["page_url"]).str.contains(
            self._pattern
        )
        return _where(blocked, "blocked_domain")


_IMAGE_EXT = r"(?:jpe?g|png|gif|webp|bmp|svg|tiff?|heic|avif|ico)"
_FILENAME = re.compile(
    rf"^[\w\-. ()（）\[\]]{{1,120}}\.{_IMAGE_EXT}(?:\s*[(（]\s*\d+\s*[x×*]\s*\d+\s*[)）])?$"
    r"|^(?:IMG|DSC|DSCN|DSCF|DCIM|PIC|MVIMG|PXL|WP|mmexport|微信图片|截图|屏幕截图)[_\- ]?\d[\d_\-]*$"
    r"|^[0-9a-f]{16,}$",
    re.IGNORECASE,
)
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.)\S+$|^\S+\.(?:com|cn|net|org|html?)(?:/\S*)?$", re.IGNORECASE)
_NUMBER_OR_DATE = re.compile(r"^[\d\s\-/.:,，、年月日号號时時分秒第期]+$")
_TITLE_INDEX = re.compile(
    r"(?:[-_—–|]\s*(?:图|圖|第|组图)?\s*\d{1,3}\s*(?:张|張|页|頁)?|[（(]\s*(?:组图|图|圖)?\s*\d{1,3}\s*[)）]|\s(?:图|圖)\s*\d{1,3})$"
)
_NOT_WORD = r"[\s\p{P}\p{S}]"


class Boilerplate(TextFilter):
    """Alts that are no caption: generic UI words, file names, URLs, numbers and dates,
    and a page title with an image index (「…-图1」)."""

    name = "boilerplate"

    def __init__(self, generic_alts: Sequence[str]) -> None:
        self.generic_alts = sorted({re.sub(r"[\s\W_]+", "", a).lower() for a in generic_alts if a.strip()})
        self._generic_suffix = re.compile(r"^.{0,8}(?:logo|二维码|qr|icon|图标|头像|banner)$|^.{0,4}(?:图片|图像)$", re.IGNORECASE)

    def reasons(self, frame):
        alts = frame["alt_text"].str.strip_chars()
        squeezed = frame["text"].str.replace_all(_NOT_WORD, "").str.to_lowercase()
        generic = squeezed.is_in(self.generic_alts) | squeezed.str.contains(self._generic_suffix.pattern)

        def decide(alt: str) -> str | None:
            if _FILENAME.match(alt):
                return "boilerplate:file_name"
            if _URL.match(alt):
                return "boilerplate:url"
            if _NUMBER_OR_DATE.match(alt):
                return "boilerplate:number_or_date"
            if _TITLE_INDEX.search(alt):
                return "boilerplate:title_index"
            return None

        pattern_reasons = _python_reasons(alts.to_list(), decide)
        return pl.select(
            pl.when(pl.lit(generic)).then(pl.lit("boilerplate:generic")).otherwise(pl.lit(pattern_reasons))
        ).to_series()


class ChineseText(TextFilter):
    """Chinese, by script and by language ID: kana means Japanese, hangul Korean; too few Han
    characters, or CLD2 reliably naming another language, means not Chinese."""

    name = "chinese_identification"

    def __init__(self, min_han_ratio: float = 0.3, min_langid_percent: int = 50) -> None:
        self.min_han_ratio = min_han_ratio
        self.min_langid_percent = min_langid_percent

    def reasons(self, frame):
        counts = script_counts(frame["text"])

        def decide(text: str, han: int, letters: int, kana: int, hangul: int) -> str | None:
            if kana:
                return "language:japanese"
            if hangul:
                return "language:korean"
            if han == 0 or han / max(letters, 1) < self.min_han_ratio:
                return "language:too_few_han_characters"
            code, percent, reliable = cld2_language(text)
            # CLD2 calls short all-Han text Japanese or Korean; the script checks above decide those.
            if reliable and code not in CHINESE_CLD2_CODES | {"ja", "ko"} and percent >= self.min_langid_percent:
                return f"language:{code}"
            return None

        rows = zip(frame["text"].to_list(), *(counts[c].to_list() for c in ("han", "letters", "kana", "hangul")))
        return pl.Series("reason", [decide(*row) for row in rows], dtype=pl.String)


class WordLength(TextFilter):
    """Between ``min_words`` and ``max_words`` words under jieba segmentation (paper: 5–60)."""

    name = "word_length"

    def __init__(self, min_words: int = 5, max_words: int = 60) -> None:
        self.min_words, self.max_words = min_words, max_words

    def reasons(self, frame):
        def decide(text: str) -> str | None:
            n = word_count(text)
            return "length:too_short" if n < self.min_words else "length:too_long" if n > self.max_words else None

        return _python_reasons(frame["text"].to_list(), decide)


class HasNoun(TextFilter):
    """At least one noun by jieba's POS tags (paper: text quality)."""

    name = "has_noun"

    def reasons(self, frame):
        return _python_reasons(frame["text"].to_list(), lambda t: None if has_noun(t) else "no_noun")


class UnknownTokens(TextFilter):
    """At most ``max_unk`` [UNK] tokens under Chinese-CLIP's tokenizer (paper: 5)."""

    name = "unk_tokens"

    def __init__(self, max_unk: int = 5) -> None:
        self.max_unk = max_unk

    def reasons(self, frame):
        return _where(unk_counts(frame["text"]) > self.max_unk, "too_many_unk_tokens")


class InformationDensity(TextFilter):
    """Character entropy of at least ``min_bits`` (see :func:`.tokens.char_entropy`)."""

    name = "information_density"

    def __init__(self, min_bits: float) -> None:
        self.min_bits = min_bits

    def reasons(self, frame):
        low = pl.Series([char_entropy(t) < self.min_bits for t in frame["text"].to_list()], dtype=pl.Boolean)
        return _where(low, "low_entropy")


class SensitiveWords(TextFilter):
    """Any word of the sensitive-word list in the caption (case-insensitive substring)."""

    name = "sensitive_words"

    def __init__(self, words: Sequence[str]) -> None:
        self.words = sorted({w.strip().lower() for w in words if w.strip()})

    def reasons(self, frame):
        if not self.words:
            return pl.Series("reason", [None] * frame.height, dtype=pl.String)
        hit = frame["text"].str.to_lowercase().str.contains_any(self.words)
        return _where(hit, "sensitive_word")


class TextSafety(TextFilter):
    """A configured safety classifier's score at or above ``threshold``."""

    name = "text_safety_classifier"

    def __init__(self, classifier: TextSafetyClassifier, threshold: float = 0.5, batch_size: int = 1024) -> None:
        self._classifier = classifier
        self.classifier = type(classifier).__name__
        self.threshold, self.batch_size = threshold, batch_size

    def reasons(self, frame):
        texts = frame["text"].to_list()
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            scores.extend(float(s) for s in self._classifier.unsafe_scores(texts[start : start + self.batch_size]))
        if len(scores) != len(texts):
            raise ValueError(f"{self.classifier} returned {len(scores)} scores for {len(texts)} texts")
        return _where(pl.Series(scores) >= self.threshold, "unsafe_text")
