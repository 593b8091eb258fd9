"""The bundled sample crawl: a miniature Common Crawl mirror and the HTTP server that serves it.

The offline demo builds the mirror with :func:`build_sample_mirror` and serves
it with :class:`SampleCrawlServer`, so the whole pipeline runs without the
internet: ``cc_base_url`` points at the server, and image hosts under the
``sample_host_suffix`` are answered from the mirror's ``www/`` tree.
"""

from danqing_assets.sample_crawl.generator import SampleMirror, build_sample_mirror
from danqing_assets.sample_crawl.server import SampleCrawlServer

__all__ = ["SampleCrawlServer", "SampleMirror", "build_sample_mirror"]
