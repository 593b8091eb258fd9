"""Command line for people: build the sample mirror, or serve one.

python -m danqing_assets.sample_crawl build --root data/sample-crawl [--seed 0]
python -m danqing_assets.sample_crawl serve --root data/sample-crawl [--port 8123]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from danqing_assets.sample_crawl.generator import build_sample_mirror
from danqing_assets.sample_crawl.server import SampleCrawlServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m danqing_assets.sample_crawl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write a sample mirror")
    build.add_argument("--root", type=Path, required=True)
    build.add_argument("--seed", type=int, default=0)
    serve = commands.add_parser("serve", help="serve a mirror on 127.0.0.1 until Ctrl-C")
    serve.add_argument("--root", type=Path, required=True)
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    if args.command == "build":
        return _build(args.root, args.seed)
    return _serve(args.root, args.port)


def _build(root: Path, seed: int) -> int:
    started = time.perf_counter()
    mirror = build_sample_mirror(root, seed=seed)
    print(
        json.dumps(
            {
                "root": str(mirror.root),
                "seconds": round(time.perf_counter() - started, 2),
                "megabytes": round(mirror.total_bytes / 1e6, 2),
                "warc_paths": mirror.warc_paths,
                "html_pages": mirror.html_pages,
                "img_tags": mirror.img_tags,
                "image_files": mirror.image_files,
            },
            indent=2,
        )
    )
    return 0


def _serve(root: Path, port: int) -> int:
    if not (root / "collinfo.json").is_file():
        print(f"{root} holds no mirror; run the build command first")
        return 2
    with SampleCrawlServer(root, port=port) as server:
        print(f"serving {root} at {server.base_url}")
        print(f"  crawl list: {server.base_url}collinfo.json")
        print(f"  sample hosts: use {server.base_url} as an HTTP proxy, or send their Host header to it")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
