"""Words (jieba segmentation and POS tags) and Chinese-CLIP tokens of captions.

Segmentation and tagging use jieba-rs (``rjieba``): jieba's dictionary and HMM,
the same words and tags as the Python jieba, 10–50× faster. ``[UNK]`` tokens
are counted under cn_clip's own BERT tokenizer and vocabulary.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

import polars as pl
import rjieba

_WORD = re.compile(r"\w")


def word_count(text: str) -> int:
    """Words of a caption under jieba segmentation; punctuation and spaces are not words."""
    return sum(1 for token in rjieba.cut(text) if _WORD.search(token))


def word_counts(texts: Iterable[str]) -> list[int]:
    return [word_count(t) for t in texts]


def has_noun(text: str) -> bool:
    """Whether jieba tags any word of the caption as a noun (n, nr, ns, nt, nz, ng, …)."""
    return any(tag.startswith("n") for _, tag in rjieba.tag(text))


@lru_cache(maxsize=1)
def _clip_tokenizer():
    from cn_clip.clip import _tokenizer  # the vocabulary ships inside cn_clip

    return _tokenizer


@lru_cache(maxsize=1)
def _unk_free_pattern() -> str:
    """A regex matching any character that could become [UNK]; texts without one have none."""
    vocab = _clip_tokenizer().vocab
    safe = []
    for token in vocab:
        if len(token) != 1 or token.isspace():
            continue
        category = unicodedata.category(token)
        standalone = category.startswith("P") or 0x3400 <= ord(token) <= 0x9FFF or 0xF900 <= ord(token) <= 0xFAFF
        # letters and digits are glued into words by WordPiece: safe only if they also exist as "##x"
        if standalone or ("##" + token) in vocab:
            safe.append(token)
    escaped = "".join(re.escape(c) if c not in "-]\\^" else "\\" + c for c in sorted(safe))
    return f"[^{escaped}\\s]"


def unk_counts(texts: pl.Series) -> pl.Series:
    """[UNK] tokens per text; the real tokenizer runs only where a character could produce one."""
    lowered = texts.str.to_lowercase()
    suspect = lowered.str.contains(_unk_free_pattern()) | (texts.str.len_chars() > 100)
    counts = [0] * len(texts)
    tokenizer = _clip_tokenizer()
    for i in suspect.arg_true().to_list():
        counts[i] = sum(1 for tok in tokenizer.tokenize(texts[i]) if tok == "[UNK]")
    return pl.Series("unk_tokens", counts, dtype=pl.Int32)


def char_entropy(text: str) -> float:
    """Shannon entropy, in bits, of the caption's character distribution (spaces excluded).

    H = −Σ p(c) log2 p(c) over the distinct characters c. A caption of n distinct
    characters has H = log2 n; "哈哈哈哈" has 0.
    """
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    n = len(chars)
    entropy = -sum(k / n * math.log2(k / n) for k in Counter(chars).values())
    return abs(entropy)  # a single repeated character gives -0.0
