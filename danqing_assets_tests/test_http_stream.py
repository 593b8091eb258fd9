import gzip
import io
import json

import httpx
import pytest

from danqing_assets.common_crawl.client import CommonCrawlClient
from danqing_assets.common_crawl.http_stream import HttpFetchError, ResumableHttpStream, RetryPolicy
from danqing_assets.curation.warc_reader import PageRecord, iter_pages
from danqing_assets_tests.fault_server import Faults, FaultServer
from danqing_assets_tests.realworld import CC_WARC, COLLINFO, REAL_WARC_PATHS

FAST = RetryPolicy(attempts=4, backoff_s=0.01)
BLOB = bytes(range(256)) * 4096  # 1 MiB


def read_all(url, policy=FAST):
    with httpx.Client(timeout=5) as client, ResumableHttpStream(client, url, policy) as stream:
        data = io.BufferedReader(stream, 65536).read()
        return data, stream.resumes


def test_a_broken_transfer_resumes_with_range_and_yields_identical_bytes():
    with FaultServer({"/f": BLOB}, Faults(break_after=[100_000, 300_000])) as srv:
        data, resumes = read_all(srv.url + "/f")
    assert data == BLOB and resumes == 2
    ranges = [r for _, r in srv.requests]
    assert ranges[0] is None and len(ranges) == 3
    # each resume starts at or before the break (bytes buffered in flight are fetched again)
    starts = [int(r.split("=")[1].rstrip("-")) for r in ranges[1:]]
    assert 0 < starts[0] <= 100_000 and starts[0] < starts[1] <= starts[0] + 300_000


def test_a_server_that_ignores_range_is_handled_by_skipping():
    with FaultServer({"/f": BLOB}, Faults(break_after=[123_457], ignore_range=True)) as srv:
        data, resumes = read_all(srv.url + "/f")
    assert data == BLOB and resumes == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status):
    with FaultServer({"/f": BLOB}, Faults(status_first=[status, status])) as srv:
        data, _ = read_all(srv.url + "/f")
    assert data == BLOB and len(srv.requests) == 3


def test_retries_are_bounded_and_final_errors_are_clear():
    with FaultServer({"/f": BLOB}, Faults(status_first=[503] * 10)) as srv:
        with pytest.raises(HttpFetchError, match="HTTP 503"):
            read_all(srv.url + "/f")
        assert len(srv.requests) == FAST.attempts
    with FaultServer({}) as srv:
        with pytest.raises(HttpFetchError, match="HTTP 404"):
            read_all(srv.url + "/missing")


def test_a_server_that_keeps_breaking_gives_up():
    with FaultServer({"/f": BLOB}, Faults(break_after=[10] * 20)) as srv:
        with pytest.raises(HttpFetchError, match="transfer broke"):
            read_all(srv.url + "/f")


def test_retry_after_is_honoured_within_the_cap():
    assert RetryPolicy(backoff_s=1, max_backoff_s=30).delay(1, "7") == 7
    assert RetryPolicy(backoff_s=1, max_backoff_s=30).delay(1, "7000") == 30
    assert RetryPolicy(backoff_s=1, max_backoff_s=30).delay(3) == 4


def test_common_crawl_client_over_http_with_a_flaky_server():
    paths = REAL_WARC_PATHS.read_bytes()
    warc_path = paths.decode().splitlines()[0]
    files = {
        "/collinfo.json": COLLINFO.read_bytes(),
        "/crawl-data/CC-MAIN-2025-26/warc.paths.gz": gzip.compress(paths),
        "/" + warc_path: CC_WARC.read_bytes(),
    }
    faults = Faults(status_first=[503])
    with FaultServer(files, faults) as srv:
        with CommonCrawlClient(srv.url, srv.url + "/collinfo.json", policy=FAST) as client:
            crawls = client.list_crawls()
            assert len(crawls) == len(json.loads(COLLINFO.read_text()))
            assert crawls[0].id == "CC-MAIN-2025-47"
            listed = client.warc_paths("CC-MAIN-2025-26")
            assert listed[0] == warc_path and len(listed) == 10
            faults.break_after = [len(files["/" + warc_path]) // 2]  # the WARC transfer breaks once, half-way
            with client.open_warc(warc_path) as stream:
                items = list(iter_pages(stream))
    assert len([i for i in items if isinstance(i, PageRecord)]) == 16
    assert sum(1 for _, r in srv.requests if r) == 1


def test_local_directory_mirror(tmp_path):
    (tmp_path / "crawl-data/CC-MAIN-2025-26").mkdir(parents=True)
    (tmp_path / "crawl-data/CC-MAIN-2025-26/warc.paths.gz").write_bytes(gzip.compress(REAL_WARC_PATHS.read_bytes()))
    (tmp_path / "collinfo.json").write_bytes(COLLINFO.read_bytes())
    with CommonCrawlClient(str(tmp_path), str(tmp_path / "collinfo.json")) as client:
        assert len(client.warc_paths("CC-MAIN-2025-26")) == 10
        assert client.list_crawls()[-1].id == "CC-MAIN-2008-2009"
        with pytest.raises(ValueError, match=r"\.\."):
            with client.open_warc("crawl-data/../../etc/passwd"):
                pass
