"""Featurization under joblib's dask backend: the same graphs, computed on the workers of a dask cluster."""

import joblib
import numpy as np
import pytest

from skcgcnn import CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals

pytestmark = pytest.mark.slow

distributed = pytest.importorskip("distributed")


def test_featurization_runs_on_a_two_worker_local_cluster():
    X, _ = make_ionic_crystals(60, random_state=0)
    texts = [s.to(fmt="cif") for s in X]
    local = CrystalGraphTransformer(n_jobs=1).transform(texts)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
            graphs = CrystalGraphTransformer(n_jobs=-1).transform(texts)
        workers = set(client.scheduler_info()["workers"])
    assert len(stream.data) >= 2 and {task["worker"] for task in stream.data} <= workers  # the chunks ran there
    for name in ("atomic_numbers", "nbr_count", "nbr_shared", "nbr_idx", "nbr_dist", "offsets", "edge_offsets"):
        np.testing.assert_array_equal(getattr(graphs, name), getattr(local, name))
