"""Common Crawl crawl ids (``CC-MAIN-2024-10``) and the files that list a crawl's WARCs."""

from __future__ import annotations

import gzip
import re

# Regular ids are CC-MAIN-<year>-<ISO week>. The crawl list also holds three
# irregular early ids: CC-MAIN-2012, CC-MAIN-2009-2010 and CC-MAIN-2008-2009.
_WEEKLY = re.compile(r"CC-MAIN-(?P<year>20\d\d)-(?P<week>\d\d)")
_YEAR_SPAN = re.compile(r"CC-MAIN-(?P<first>20\d\d)-(?P<second>20\d\d)")
_YEAR = re.compile(r"CC-MAIN-(?P<year>20\d\d)")


class InvalidCrawlId(ValueError):
    """A string that is not a Common Crawl crawl id."""


def validate_crawl_id(crawl_id: str) -> str:
    """Return ``crawl_id`` unchanged if it has a Common Crawl crawl id's form, else raise.

    Accepted: ``CC-MAIN-YYYY-WW`` (week 01–53) and the irregular early ids
    ``CC-MAIN-YYYY`` and ``CC-MAIN-YYYY-YYYY`` (consecutive years).
    """
    if not isinstance(crawl_id, str):
        raise InvalidCrawlId(f"crawl id must be a string, got {type(crawl_id).__name__}")
    if m := _WEEKLY.fullmatch(crawl_id):
        if 1 <= int(m["week"]) <= 53:
            return crawl_id
        raise InvalidCrawlId(f"{crawl_id!r}: week {m['week']} is not an ISO week (01-53)")
    if m := _YEAR_SPAN.fullmatch(crawl_id):
        if int(m["second"]) == int(m["first"]) + 1:
            return crawl_id
        raise InvalidCrawlId(f"{crawl_id!r}: a two-year id must name consecutive years")
    if _YEAR.fullmatch(crawl_id):
        return crawl_id
    raise InvalidCrawlId(
        f"{crawl_id!r} is not a Common Crawl crawl id: expected CC-MAIN-YYYY-WW "
        "(e.g. CC-MAIN-2024-10) or one of the early forms CC-MAIN-YYYY / CC-MAIN-YYYY-YYYY"
    )


def crawl_year(crawl_id: str) -> int:
    """The (first) year of a crawl id."""
    validate_crawl_id(crawl_id)
    return int(crawl_id.split("-")[2])


def warc_paths_key(crawl_id: str) -> str:
    """Path of a crawl's WARC listing, relative to the data endpoint."""
    return f"crawl-data/{validate_crawl_id(crawl_id)}/warc.paths.gz"


class InvalidWarcPaths(ValueError):
    """A warc.paths listing that does not list this crawl's WARC files."""


def parse_warc_paths(data: bytes, crawl_id: str) -> list[str]:
    """Parse a (gzipped or plain) ``warc.paths`` listing and check every line.

    Every path must be a WARC file of ``crawl_id``
    (``crawl-data/<id>/segments/<segment>/warc/<name>.warc.gz``). A file that merely
    carries the name — Common Crawl also publishes parquet part listings — is rejected
    whole rather than half-used.
    """
    validate_crawl_id(crawl_id)
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidWarcPaths(f"warc.paths of {crawl_id} is not ASCII text: {exc}") from None
    prefix = f"crawl-data/{crawl_id}/segments/"
    paths = [line.strip() for line in text.splitlines() if line.strip()]
    if not paths:
        raise InvalidWarcPaths(f"warc.paths of {crawl_id} lists no files")
    for lineno, path in enumerate(paths, 1):
        if not (path.startswith(prefix) and "/warc/" in path and path.endswith(".warc.gz")) or ".." in path:
            raise InvalidWarcPaths(
                f"warc.paths of {crawl_id}, line {lineno}: {path[:120]!r} is not a WARC file of this crawl "
                f"(expected {prefix}<segment>/warc/<name>.warc.gz)"
            )
    return paths
