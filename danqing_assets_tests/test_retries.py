"""Step retries and re-execution from failure, on ``raw_pairs`` over the sample crawl.

The crawl is served by a real HTTP server on 127.0.0.1 that fails chosen WARC
files; the HTTP client is given one attempt, so a failure reaches Dagster as a
failed step instead of being retried inside it.
"""

from pathlib import Path

import dagster as dg
import pytest

from danqing_assets.asset_versions import ASSET_STAGES
from danqing_assets.assets.raw_pairs import raw_pairs
from danqing_assets.definitions import ALL_ASSETS
from danqing_assets.partitions import register_snapshots
from danqing_assets.resources.common_crawl import CommonCrawlResource
from danqing_assets.resources.io_manager import ObjectStoreIOManager
from danqing_assets.resources.storage import StorageResource
from danqing_assets.resources.tables import load_manifest, read_table
from danqing_assets.retries import io_retry_policy
from danqing_assets.settings import Settings, get_settings
from danqing_assets_tests.loopback_http import LoopbackHTTPServer, QuietHandler

SNAPSHOT = "CC-MAIN-2026-08"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
JOB = "raw_pairs_in_process"


class FailingMirror(LoopbackHTTPServer):
    """Serves a sample mirror; answers 503 to a path while it has failures left for it (-1: always)."""

    def __init__(self, root: Path) -> None:
        self.root, self.failures, self.requests = root, {}, []
        mirror = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                mirror.requests.append(path)
                left = mirror.failures.get(path, 0)
                if left:
                    mirror.failures[path] = left - 1 if left > 0 else left
                    self.send_error(503)
                    return
                file = (mirror.root / path).resolve()
                if mirror.root not in file.parents or not file.is_file():
                    self.send_error(404)
                    return
                body = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return super().url + "/"


def raw_pairs_job() -> dg.JobDefinition:
    """raw_pairs as a job of its own, resources from the settings (reconstructable for re-execution)."""
    storage = StorageResource.from_settings()
    common_crawl = CommonCrawlResource.from_settings()
    defs = dg.Definitions(
        assets=[raw_pairs],
        resources={"storage": storage, "common_crawl": common_crawl,
                   "io_manager": ObjectStoreIOManager(storage=storage)},
        jobs=[dg.define_asset_job(JOB, selection=[raw_pairs], executor_def=dg.in_process_executor)],
    )
    return defs.resolve_job_def(JOB)


def steps(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> list[str]:
    return [e.dagster_event.step_key for e in instance.all_logs(run_id, of_type=event_type)]


def shard_step(index: int) -> str:
    return f"raw_pairs.extract_shard_pairs[shard_{index:05d}]"


def test_every_io_step_has_the_one_retry_policy():
    policy = io_retry_policy()
    assert policy == dg.RetryPolicy(max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL,
                                    jitter=dg.Jitter.PLUS_MINUS)
    # every asset that does I/O
    ours = [a for a in ALL_ASSETS if any(k.to_user_string() in ASSET_STAGES for k in a.keys)]
    ops = {}
    for asset in ours:
        node = asset.node_def
        for op in (node.iterate_op_defs() if isinstance(node, dg.GraphDefinition) else [node]):
            ops[op.name] = op.retry_policy
    assert set(ops) == {"plan_warc_shards", "extract_shard_pairs", "commit_raw_pairs", "text_filtered_pairs",
                        "plan_image_downloads", "download_image_chunk", "commit_image_downloads",
                        "image_filtered_pairs", "clip_embeddings", "clip_filtered_pairs", "dedup_index",
                        "takedown_list", "release", "release_manifest", "benchmark_results"}
    assert all(p == policy for p in ops.values()), ops
    # the policy follows the settings
    custom = io_retry_policy(Settings(step_max_retries=5, step_retry_delay_s=0.5))
    assert (custom.max_retries, custom.delay) == (5, 0.5)


@pytest.fixture
def failing_mirror(sample_mirror, monkeypatch, tmp_path):
    with FailingMirror(sample_mirror.root.resolve()) as server:
        monkeypatch.setenv("DANQING_CC_BASE_URL", server.url)
        monkeypatch.setenv("DANQING_CC_HTTP_RETRIES", "1")  # no retry inside the step: the step fails
        monkeypatch.setenv("DANQING_STORAGE_ROOT", str(tmp_path / "store"))
        get_settings.cache_clear()
        yield server


def test_a_transient_failure_is_retried_and_a_failed_shard_re_executes_alone(sample_mirror, failing_mirror):
    warcs = sample_mirror.warc_paths[SNAPSHOT]
    assert len(warcs) == 3
    failing_mirror.failures[warcs[0]] = 1  # transient: fails once
    failing_mirror.failures[warcs[2]] = -1  # fails until the server is fixed

    with dg.instance_for_test() as instance:
        register_snapshots(instance, [SNAPSHOT])
        job = dg.reconstructable(raw_pairs_job)
        with dg.execute_job(job, instance, run_config=QUIET, tags={"dagster/partition": SNAPSHOT}) as first:
            assert not first.success
            parent = first.run_id
        # shard 0 failed once, was retried and succeeded; shard 2 used every retry and failed
        retried = steps(instance, parent, dg.DagsterEventType.STEP_UP_FOR_RETRY)
        assert retried.count(shard_step(0)) == 1
        assert retried.count(shard_step(2)) == io_retry_policy().max_retries
        assert steps(instance, parent, dg.DagsterEventType.STEP_RESTARTED).count(shard_step(0)) == 1
        assert set(steps(instance, parent, dg.DagsterEventType.STEP_SUCCESS)) == {
            "raw_pairs.plan_warc_shards", shard_step(0), shard_step(1)}
        assert steps(instance, parent, dg.DagsterEventType.STEP_FAILURE) == [shard_step(2)]
        assert failing_mirror.requests.count(warcs[0]) == 2 and failing_mirror.requests.count(warcs[1]) == 1
        # nothing half-done is visible
        assert load_manifest(StorageResource.from_settings().store(), "raw_pairs", SNAPSHOT) is None

        # the server is fixed; "re-execute from failure" runs the failed shard and the commit, nothing else
        failing_mirror.failures.clear()
        before = list(failing_mirror.requests)
        options = dg.ReexecutionOptions.from_failure(parent, instance)
        # the parent's partition tag travels with the re-execution, as the UI's "re-execute" copies it
        with dg.execute_job(job, instance, run_config=QUIET, reexecution_options=options,
                            tags={"dagster/partition": SNAPSHOT}) as second:
            assert second.success
            child = second.run_id
        assert steps(instance, child, dg.DagsterEventType.STEP_START) == [shard_step(2), "raw_pairs.commit_raw_pairs"]
        assert failing_mirror.requests[len(before):] == [warcs[2]]  # no listing, no other WARC read again

    store = StorageResource.from_settings().store()
    manifest = load_manifest(store, "raw_pairs", SNAPSHOT)
    # the finished shards' parts came from the first run, the re-executed one's from the second
    assert [p.rsplit("-", 1)[-1].split(".")[0] for p in manifest.parts] == [parent[:8], parent[:8], child[:8]]
    assert set(read_table(store, manifest)["warc_path"]) == set(warcs)
