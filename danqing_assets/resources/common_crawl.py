"""The Common Crawl client as a Dagster resource."""

from __future__ import annotations

import dagster as dg

from ..common_crawl.client import CommonCrawlClient
from ..common_crawl.http_stream import RetryPolicy
from ..settings import Settings, get_settings


class CommonCrawlResource(dg.ConfigurableResource):
    """Where crawl data comes from: Common Crawl's public endpoint, a mirror URL, or a local directory."""

    base_url: str
    collinfo_url: str
    timeout_s: float = 60.0
    retries: int = 6
    backoff_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> CommonCrawlResource:
        settings = settings or get_settings()
        return cls(
            base_url=settings.cc_base_url,
            collinfo_url=settings.resolved_collinfo_url,
            timeout_s=settings.cc_http_timeout_s,
            retries=settings.cc_http_retries,
            backoff_s=settings.cc_http_backoff_s,
        )

    def client(self) -> CommonCrawlClient:
        policy = RetryPolicy(attempts=self.retries, backoff_s=self.backoff_s)
        return CommonCrawlClient(self.base_url, self.collinfo_url, timeout_s=self.timeout_s, policy=policy)
