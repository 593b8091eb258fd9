"""An IO manager that keeps everything steps hand each other in the object store.

Steps may run in different processes or on different machines (Celery,
Kubernetes), so nothing is passed through local disk: dataset assets are
committed as parquet tables (:mod:`.tables`), and small values between ops are
pickled under ``_dagster_io/`` in the same store.
"""


import pickle

import dagster as dg

from .storage import StorageResource
from .tables import TableManifest, commit_table, load_manifest


def _io_key(context: dg.OutputContext) -> str:
    parts = context.get_asset_identifier() if context.has_asset_key else context.get_identifier()
    return "_dagster_io/" + "/".join(parts) + ".pickle"


_FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _unfinished_runs_own(context: dg.OutputContext):
    """Whether an unreferenced object may belong to a run that has not finished (and may still commit it).

    Part and file names carry the first 8 characters of the writing run's id. A killed run stays
    unfinished until Dagster's run monitoring marks it failed; its orphans go at the next commit after.
    Without an instance to ask, every orphan is kept.
    """
    try:
        instance = context.step_context.instance
    except Exception:  # noqa: BLE001 - a context built outside a run
        return lambda key: True
    statuses = [s for s in dg.DagsterRunStatus if s not in _FINISHED]
    tags = {run.run_id[:8] for run in instance.get_runs(filters=dg.RunsFilter(statuses=statuses))}
    return lambda key: any(tag in key.rsplit("/", 1)[-1] for tag in tags)


class ObjectStoreIOManager(dg.ConfigurableIOManager):
    storage: dg.ResourceDependency[StorageResource]

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        store = self.storage.store()
        if isinstance(obj, TableManifest):
            stale = commit_table(store, obj, may_be_in_use=_unfinished_runs_own(context))
            context.log.debug(f"committed {obj.asset}/{obj.partition}: {len(obj.parts)} parts, {len(stale)} stale removed")
            return
        store.put_bytes(_io_key(context), pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def load_input(self, context: dg.InputContext) -> object:
        store = self.storage.store()
        upstream = context.upstream_output
        if context.has_asset_key:
            asset = context.asset_key.path[-1]
            keys = context.asset_partition_keys if context.has_asset_partitions else ["_all"]
            manifests = {key: load_manifest(store, asset, key) for key in keys}
            if all(m is not None for m in manifests.values()):
                return manifests[keys[0]] if len(keys) == 1 else manifests
        assert upstream is not None
        return pickle.loads(store.get_bytes(_io_key(upstream)))
