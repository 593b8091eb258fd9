"""Sensors: new Common Crawl crawls become partitions, and automation keeps partitions up to date.

``new_crawl_sensor`` reads the crawl list (``collinfo.json``), picks the crawls
that pass the filter (``DANQING_NEW_CRAWLS_NEWEST``, ``DANQING_NEW_CRAWLS_FROM_YEAR``)
and are not yet partitions, adds them to ``cc_snapshots`` and requests their
``raw_pairs`` run in the same tick (one run key per crawl). Everything downstream
follows through the assets' automation conditions, which
``automation_condition_sensor`` evaluates.
"""

import json
from collections.abc import Iterable

import dagster as dg
import httpx

from .assets.raw_pairs import raw_pairs
from .common_crawl.client import CommonCrawlClient
from .common_crawl.http_stream import RetryPolicy
from .curation.crawl_ids import crawl_year, validate_crawl_id
from .partitions import cc_snapshots
from .resources.common_crawl import CommonCrawlResource
from .settings import Settings, get_settings

NEW_CRAWL_SENSOR = "new_crawl_sensor"
AUTOMATION_SENSOR = "automation_condition_sensor"
NEW_CRAWL_TAG = "danqing/new_crawl"
RUNNING = dg.DefaultSensorStatus.RUNNING
# A sensor tick has about a minute; the next tick reads the list again anyway.
_MAX_FETCH_TIMEOUT_S = 20.0
# What a crawl list that cannot be read raises: transport, HTTP status, JSON, entries that are not crawls.
_LIST_ERRORS = (OSError, httpx.HTTPError, ValueError, KeyError, TypeError)


def crawl_sort_key(crawl_id: str) -> tuple[int, int]:
    """Chronological order of crawl ids: (first year, week); the irregular early ids count as week 0."""
    validate_crawl_id(crawl_id)
    parts = crawl_id.split("-")
    week = int(parts[3]) if len(parts) == 4 and len(parts[3]) == 2 else 0
    return crawl_year(crawl_id), week


def select_new_crawls(crawl_ids: Iterable[str], *, newest: int, from_year: int, known: Iterable[str]) -> list[str]:
    """Crawls to add, oldest first.

    Of the ``newest`` newest crawls (0: all), those from ``from_year`` on (0: any year) that are not ``known``.
    """
    candidates = sorted(set(crawl_ids), key=crawl_sort_key, reverse=True)
    if newest:
        candidates = candidates[:newest]
    if from_year:
        candidates = [c for c in candidates if crawl_year(c) >= from_year]
    known = set(known)
    return [c for c in reversed(candidates) if c not in known]


def _read_cursor(cursor: str | None) -> set[str]:
    return set(json.loads(cursor)["handled"]) if cursor else set()


def _write_cursor(handled: set[str]) -> str:
    return json.dumps({"handled": sorted(handled, key=crawl_sort_key)})


def build_new_crawl_sensor(settings: Settings | None = None) -> dg.SensorDefinition:
    settings = settings or get_settings()

    @dg.sensor(
        name=NEW_CRAWL_SENSOR,
        asset_selection=[raw_pairs],
        minimum_interval_seconds=settings.new_crawl_interval_s,
        default_status=RUNNING if settings.new_crawl_sensor_running else dg.DefaultSensorStatus.STOPPED,
        description="Adds new Common Crawl crawls (filtered by DANQING_NEW_CRAWLS_NEWEST / _FROM_YEAR) as cc_snapshots "
        "partitions and requests their raw_pairs run; downstream assets follow by their automation conditions.",
    )
    def new_crawl_sensor(context: dg.SensorEvaluationContext, common_crawl: CommonCrawlResource):
        current = get_settings()
        policy = RetryPolicy(attempts=current.new_crawl_fetch_attempts, backoff_s=common_crawl.backoff_s)
        timeout_s = min(common_crawl.timeout_s, _MAX_FETCH_TIMEOUT_S)
        try:
            client = CommonCrawlClient(common_crawl.base_url, common_crawl.collinfo_url, timeout_s=timeout_s,
                                       policy=policy)
            with client:
                crawls = [c.id for c in client.list_crawls()]
        except _LIST_ERRORS as exc:
            # The cursor stays as it was: nothing is forgotten, nothing is added.
            url = common_crawl.collinfo_url
            return dg.SkipReason(f"crawl list {url} could not be read: {type(exc).__name__}: {exc}")

        handled = _read_cursor(context.cursor)
        existing = set(context.instance.get_dynamic_partitions(cc_snapshots.name))
        wanted = select_new_crawls(crawls, newest=current.new_crawls_newest, from_year=current.new_crawls_from_year,
                                   known=handled)
        # Partitions someone added by hand are theirs to materialise: not added again, no run.
        already = [c for c in wanted if c in existing]
        new = [c for c in wanted if c not in existing]
        handled |= set(wanted)
        if already:
            context.log.info(f"already partitions, left alone: {', '.join(already)}")
        if not new:
            skip = f"no new crawls among {len(crawls)} listed"
            return dg.SensorResult(skip_reason=skip, cursor=_write_cursor(handled))
        context.log.info(f"new crawls: {', '.join(new)}")
        return dg.SensorResult(
            dynamic_partitions_requests=[cc_snapshots.build_add_request(new)],
            run_requests=[dg.RunRequest(partition_key=c, run_key=f"new-crawl-{c}", tags={NEW_CRAWL_TAG: c})
                          for c in new],
            cursor=_write_cursor(handled),
        )

    return new_crawl_sensor


def build_automation_sensor(settings: Settings | None = None) -> dg.AutomationConditionSensorDefinition:
    settings = settings or get_settings()
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=RUNNING,
        minimum_interval_seconds=settings.automation_interval_s,
        description="Evaluates the assets' automation conditions: a re-materialised partition or a changed setting "
        "updates the same snapshot's downstream partitions.",
    )


def build_sensors(settings: Settings | None = None) -> list[dg.SensorDefinition]:
    settings = settings or get_settings()
    return [build_new_crawl_sensor(settings), build_automation_sensor(settings)]
