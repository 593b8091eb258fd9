"""Word lists shipped with the package, plus user files given in the settings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

LEXICONS = Path(__file__).with_name("lexicons")


def read_word_list(path: Path) -> list[str]:
    """One entry per line; blank lines and ``#`` comments ignored."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words.append(line)
    return words


@lru_cache(maxsize=16)
def shipped(name: str) -> tuple[str, ...]:
    return tuple(read_word_list(LEXICONS / f"{name}.txt"))


def combined(name: str, user_file: Path | None) -> tuple[str, ...]:
    """The shipped list, extended by a user file when one is set."""
    words = list(shipped(name))
    if user_file is not None:
        words.extend(read_word_list(Path(user_file)))
    return tuple(dict.fromkeys(words))
