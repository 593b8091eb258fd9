"""Caption refinement: the rewrite DanQing applies before filtering.

Traditional → Simplified (OpenCC ``t2s``), emoji and decorative symbols stripped,
full-width letters and digits made half-width, whitespace and punctuation
normalised. Vectorised with polars (Rust regex with Unicode properties); OpenCC
converts a whole batch in one call.

Example from the paper: 「两位老年男性&正在為¥朋友們的素食晚餐準備燒烤」 →
「两位老年男性正在为朋友们的素食晚餐准备烧烤」.
"""

from __future__ import annotations

from functools import lru_cache

import opencc
import polars as pl

# Emoji and their glue (variation selectors, ZWJ, skin tones, keycaps, flags).
_EMOJI = r"[\p{Extended_Pictographic}\p{Emoji_Presentation}\p{Emoji_Modifier}\p{Regional_Indicator}\x{FE0E}\x{FE0F}\x{200D}\x{20E3}]"
# Decorative symbols, currency, private use, format and control characters, and the
# ASCII specials that carry no caption meaning (the paper strips & and ¥).
_SPECIAL = r"[\p{So}\p{Sk}\p{Sc}\p{Co}\p{Cf}\p{Cc}&*#@^~|\\<>{}=+_`$]"
# Short bracketed tags that sites prefix captions with: 【高清】, [组图], （多图）.
_LEADING_TAG = r"^\s*[【\[［〔]\s*[^】\]］〕]{1,8}\s*[】\]］〕]\s*"
_PUNCT_RUN = r"([！!？?。，,、；;：:～~…·.\-—])[！!？?。，,、；;：:～~…·.\-—]+"
# Punctuation that may not open or close a caption (closing brackets, quotes and 。 may end one).
_EDGE_PUNCT = r"^[\s！!？?，,、；;：:～~…·.\-—/]+|[\s！!？?，,、；;：:～~…·\-—/]+$"
_HAN_SPACE_HAN = r"(\p{Han})\s+(\p{Han})"

# Full-width ASCII letters and digits, and the ideographic space, to their ASCII forms;
# full-width punctuation (，！？) stays: it is Chinese punctuation.
_HALF_WIDTH = str.maketrans(
    {**{chr(c): chr(c - 0xFEE0) for c in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]},
     "\u3000": " "}
)


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(texts: list[str]) -> list[str]:
    """Traditional → Simplified for a batch, in one OpenCC call (texts hold no newlines)."""
    if not texts:
        return []
    return _t2s().convert("\n".join(texts)).split("\n")


def refine_captions(texts: pl.Series) -> pl.Series:
    """The refined caption for every text; empty strings where nothing is left."""
    s = texts.fill_null("").str.replace_all(r"[\r\n\t\v\f]+", " ")
    s = s.map_elements(lambda t: t.translate(_HALF_WIDTH), return_dtype=pl.String, skip_nulls=True)
    s = (
        s.str.replace_all(_EMOJI, "")
        .str.replace(_LEADING_TAG, "")
        .str.replace_all(_SPECIAL, " ")
        .str.replace_all(r"\s+", " ")
        .str.replace_all(_HAN_SPACE_HAN, "$1$2")
        .str.replace_all(_HAN_SPACE_HAN, "$1$2")  # overlapping pairs: 一 二 三
        .str.replace_all(_PUNCT_RUN, "$1")
        .str.replace_all(_EDGE_PUNCT, "")
        .str.strip_chars()
    )
    return pl.Series(texts.name, to_simplified(s.to_list()), dtype=pl.String)
