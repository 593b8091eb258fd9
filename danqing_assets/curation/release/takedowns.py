"""Takedown lists: what must never appear in a release.

One entry per line, ``<kind> <value>``; ``#`` at the start of a line or after a space starts a comment::

    url https://img.example.com/cat.jpg      # exactly this image URL (or page URL)
    domain example.org                       # the host and every subdomain, image or page
    sha256 9f86d081884c7d65…                 # the image as downloaded (the release's sha256 column)
    phash c3d2e1f0a9b8c7d6                   # the image's pHash, and near-duplicates of it

A bad line is an error naming the line: a takedown that silently does nothing is worse than none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import polars as pl

KINDS = ("url", "domain", "sha256", "phash")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PHASH = re.compile(r"[0-9a-f]{16}")
_HOST = re.compile(r"(?=.{1,253}$)([a-z0-9-]{1,63}\.)*[a-z0-9-]{1,63}")
TAKEDOWN_SCHEMA = {"kind": pl.String, "value": pl.String}


class InvalidTakedownList(ValueError):
    """A takedown list line that cannot be understood."""


@dataclass(frozen=True)
class Takedowns:
    urls: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    sha256: frozenset[str] = frozenset()
    phashes: tuple[int, ...] = field(default=())

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> Takedowns:
        by_kind = {kind: frame.filter(pl.col("kind") == kind)["value"].to_list() for kind in KINDS}
        return cls(frozenset(by_kind["url"]), frozenset(by_kind["domain"]), frozenset(by_kind["sha256"]),
                   tuple(sorted(int(v, 16) for v in by_kind["phash"])))

    def to_frame(self) -> pl.DataFrame:
        rows = ([("url", v) for v in sorted(self.urls)] + [("domain", v) for v in sorted(self.domains)]
                + [("sha256", v) for v in sorted(self.sha256)] + [("phash", f"{v:016x}") for v in self.phashes])
        return pl.DataFrame(rows, schema=TAKEDOWN_SCHEMA, orient="row")

    def __len__(self) -> int:
        return len(self.urls) + len(self.domains) + len(self.sha256) + len(self.phashes)


def _normalise_host(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return host


def parse_takedown_list(text: str) -> Takedowns:
    entries: dict[str, set] = {kind: set() for kind in KINDS}
    for lineno, raw in enumerate(text.splitlines(), 1):
        # A comment starts a line or follows whitespace: a URL may itself hold '#'.
        line = re.split(r"\s#", raw.strip(), maxsplit=1)[0].strip()
        if not line or line.startswith("#"):
            continue
        kind, _, value = line.partition(" ")
        kind, value = kind.lower(), value.strip()
        if kind not in KINDS or not value:
            raise InvalidTakedownList(f"takedown list line {lineno}: expected '<{'|'.join(KINDS)}> <value>', got {raw!r}")
        if kind == "url":
            if urlsplit(value).scheme not in ("http", "https"):
                raise InvalidTakedownList(f"takedown list line {lineno}: {value!r} is not an http(s) URL")
        elif kind == "domain":
            value = _normalise_host(value)
            if not _HOST.fullmatch(value):
                raise InvalidTakedownList(f"takedown list line {lineno}: {value!r} is not a host name")
        elif kind == "sha256":
            value = value.lower()
            if not _SHA256.fullmatch(value):
                raise InvalidTakedownList(f"takedown list line {lineno}: a sha256 is 64 hex digits, got {value!r}")
        else:
            value = value.lower().removeprefix("0x")
            if not _PHASH.fullmatch(value):
                raise InvalidTakedownList(f"takedown list line {lineno}: a pHash is 16 hex digits, got {value!r}")
            value = int(value, 16)
        entries[kind].add(value)
    return Takedowns(frozenset(entries["url"]), frozenset(entries["domain"]), frozenset(entries["sha256"]),
                     tuple(sorted(entries["phash"])))


def host_of(url: str | None) -> str:
    try:
        return _normalise_host(urlsplit(url or "").hostname or "")
    except ValueError:
        return ""


def domain_blocked(host: str, domains: frozenset[str]) -> bool:
    """True when ``host`` is one of ``domains`` or a subdomain of one."""
    labels = host.split(".")
    return any(".".join(labels[i:]) in domains for i in range(len(labels)))


def takedown_rules(frame: pl.DataFrame, takedowns: Takedowns, phash_max_distance: int) -> pl.Series:
    """Per row of a release frame (``url``, ``page_url``, ``sha256``, ``phash`` as 16 hex digits): the first
    takedown rule that matches (``url``, ``domain``, ``sha256``, ``phash``), or null."""
    rules: list[str | None] = [None] * frame.height
    if not len(takedowns) or frame.height == 0:
        return pl.Series("takedown", rules, dtype=pl.String)
    phashes = np.array(takedowns.phashes, dtype=np.uint64)
    for i, (url, page, sha, ph) in enumerate(frame.select("url", "page_url", "sha256", "phash").iter_rows()):
        if url in takedowns.urls or page in takedowns.urls:
            rules[i] = "url"
        elif takedowns.domains and (domain_blocked(host_of(url), takedowns.domains)
                                    or domain_blocked(host_of(page), takedowns.domains)):
            rules[i] = "domain"
        elif sha in takedowns.sha256:
            rules[i] = "sha256"
        elif phashes.size and ph and int(np.bitwise_count(phashes ^ np.uint64(int(ph, 16))).min()) <= phash_max_distance:
            rules[i] = "phash"
    return pl.Series("takedown", rules, dtype=pl.String)
