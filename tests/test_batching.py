"""Batches gathered on the device from a resident data set equal those built on the host."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.batching import CrystalGraphDataset
from skcgcnn.datasets import make_ionic_crystals

SMALL = dict(atom_fea_len=16, n_conv=2, h_fea_len=32, batch_size=16)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def data():
    X, y = make_ionic_crystals(50, random_state=4)
    return CrystalGraphTransformer(nbr_rule="shared").transform(X), y


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_resident_batches_equal_host_batches(data, device):
    graphs, y = data
    host, resident = CrystalGraphDataset(graphs, y), CrystalGraphDataset(graphs, y, device=device)
    rng = np.random.default_rng(0)
    for idx in ([0], [49, 3, 3, 17], rng.permutation(50)[:16], np.arange(50)):
        (a, ya), (b, yb) = host.__getitems__(list(idx)), resident.__getitems__(list(idx))
        assert all(t.device.type == device for t in b.tensors.values()) and yb.device.type == device
        assert a.tensors.keys() == b.tensors.keys()
        for name in a.tensors:
            assert torch.equal(a.tensors[name], b.tensors[name].cpu()), name
        assert torch.equal(ya, yb.cpu())


def test_training_on_resident_batches_is_training_on_host_batches(data):
    graphs, y = data
    host = CGCNNRegressor(max_epochs=3, random_state=0, **SMALL).fit(graphs, y)
    resident = CGCNNRegressor(max_epochs=3, random_state=0, dataset__device="cpu", **SMALL).fit(graphs, y)
    assert resident.get_dataset(graphs).resident is not None
    assert host.get_dataset(graphs).resident is None
    np.testing.assert_array_equal(resident.predict(graphs), host.predict(graphs))


@CUDA
def test_cuda_keeps_the_data_on_the_gpu_and_bfloat16_learns(data):
    graphs, y = data
    reg = CGCNNRegressor(max_epochs=30, random_state=0, device="cuda", precision="bfloat16", **SMALL).fit(graphs, y)
    assert reg.get_dataset(graphs).resident.device.type == "cuda"
    assert np.abs(reg.predict(graphs) - y).mean() < 0.5 * np.abs(y - y.mean()).mean()
    host = CGCNNRegressor(max_epochs=1, device="cuda", dataset__device=None, **SMALL).fit(graphs, y)
    assert host.get_dataset(graphs).resident is None


@CUDA
def test_a_gpu_fitted_model_predicts_the_same_on_a_machine_without_cuda(data, tmp_path):
    import joblib

    from skcgcnn.persistence import save_model

    graphs, y = data
    reg = CGCNNRegressor(max_epochs=3, random_state=0, device="cuda", **SMALL).fit(graphs, y)
    joblib.dump(reg, tmp_path / "m.joblib")
    save_model(reg, tmp_path / "m.skcgcnn")
    joblib.dump(graphs, tmp_path / "graphs.joblib")
    np.save(tmp_path / "expected.npy", reg.predict(graphs))
    code = (
        "import warnings, joblib, numpy, torch; assert not torch.cuda.is_available()\n"
        "from skcgcnn.persistence import load_model\n"
        f"graphs = joblib.load({str(tmp_path / 'graphs.joblib')!r})\n"
        f"expected = numpy.load({str(tmp_path / 'expected.npy')!r})\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        f"    models = [joblib.load({str(tmp_path / 'm.joblib')!r}), load_model({str(tmp_path / 'm.skcgcnn')!r})]\n"
        "for model in models:\n"
        "    numpy.testing.assert_allclose(model.predict(graphs), expected, rtol=1e-4, atol=1e-5)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
