"""Shared fixtures: the sample crawl (built once, served on 127.0.0.1) and settings isolation."""

from collections.abc import Iterator
from pathlib import Path

import httpcore
import pytest

from danqing_assets.sample_crawl import SampleCrawlServer, SampleMirror, build_sample_mirror
from danqing_assets.settings import get_settings

pytest_plugins = ["danqing_assets_tests.s3_server", "danqing_assets_tests.curated_sample"]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from default settings with its own data directory."""
    monkeypatch.setenv("DANQING_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def sample_mirror(tmp_path_factory: pytest.TempPathFactory) -> SampleMirror:
    return build_sample_mirror(tmp_path_factory.mktemp("sample-crawl"))


@pytest.fixture(scope="session")
def sample_server(sample_mirror: SampleMirror) -> Iterator[SampleCrawlServer]:
    with SampleCrawlServer(sample_mirror.root) as server:
        yield server


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (ip, port) a socket is really opened to, below the guard."""
    seen: list[tuple[str, int]] = []
    original = httpcore.AnyIOBackend.connect_tcp

    async def spy(self, host, port, *args, **kwargs):
        seen.append((host, port))
        return await original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", spy)
    return seen
