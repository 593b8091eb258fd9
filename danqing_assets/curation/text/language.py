"""Is a caption Chinese? Han-character share, kana/hangul, and CLD2 language ID.

Japanese captions can be mostly kanji; any kana marks them. CLD2 (pycld2, its
model compiled into the package) catches Latin-script languages and mixed text.
"""

from __future__ import annotations

import pycld2
import polars as pl

CHINESE_CLD2_CODES = frozenset({"zh", "zh-Hant", "un"})  # "un": too short or ambiguous to say


def script_counts(texts: pl.Series) -> pl.DataFrame:
    """Per text: Han characters, all letters (Han included), kana and hangul counts."""
    return pl.DataFrame(
        {
            "han": texts.str.count_matches(r"\p{Han}"),
            "letters": texts.str.count_matches(r"\p{L}"),
            "kana": texts.str.count_matches(r"[\p{Hiragana}\p{Katakana}]"),
            "hangul": texts.str.count_matches(r"\p{Hangul}"),
        }
    )


def cld2_language(text: str) -> tuple[str, int, bool]:
    """(code, percent of text, reliable) of CLD2's top language; ("un", 0, False) when it cannot tell."""
    try:
        reliable, _, details = pycld2.detect(text)
    except pycld2.error:
        return "un", 0, False
    code = details[0][1]
    return ("un" if code == "un" else code), int(details[0][2]), bool(reliable)
