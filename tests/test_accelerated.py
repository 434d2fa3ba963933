"""Data-parallel training through Accelerate: two CPU processes (gloo) started by ``accelerate launch``."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")

from accelerate import Accelerator  # noqa: E402

from skcgcnn import CGCNNRegressor  # noqa: E402
from skcgcnn.accelerated import AcceleratedCGCNNRegressor  # noqa: E402
from skcgcnn.datasets import make_ionic_crystals  # noqa: E402
from skcgcnn.persistence import load_model, save_model  # noqa: E402

pytestmark = pytest.mark.slow

N_CRYSTALS, BATCH, EPOCHS = 64, 8, 8

SCRIPT = textwrap.dedent(
    f"""
    import json, sys
    import numpy as np, torch
    from accelerate import Accelerator
    from skcgcnn.accelerated import AcceleratedCGCNNRegressor
    from skcgcnn.datasets import make_ionic_crystals
    from skcgcnn.graph_files import load_graphs
    from skcgcnn.persistence import save_model

    out = sys.argv[1]
    accelerator = Accelerator(cpu=True, device_placement=False)
    X, y = make_ionic_crystals({N_CRYSTALS}, random_state=0)
    graphs = load_graphs(out + "/graphs")
    net = AcceleratedCGCNNRegressor(accelerator=accelerator, device=accelerator.device, batch_size={BATCH},
                                    max_epochs={EPOCHS}, random_state=0)
    net.fit(graphs, y)
    rank = accelerator.process_index
    torch.save(net.module_.state_dict(), f"{{out}}/weights{{rank}}.pt")
    record = {{"processes": accelerator.num_processes, "loss": net.history[:, "train_loss"],
               "batches": [len(epoch["batches"]) for epoch in net.history],
               "predictions": net.predict(graphs).tolist(), "features": net.transform(graphs).tolist()}}
    with open(f"{{out}}/rank{{rank}}.json", "w") as handle:
        json.dump(record, handle)
    if accelerator.is_main_process:
        save_model(net, out + "/model.skcgcnn")
    # a process that exits while the other still uses the group can abort in its C++ teardown
    accelerator.wait_for_everyone()
    accelerator.end_training()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    from skcgcnn import CrystalGraphTransformer
    from skcgcnn.graph_files import save_graphs

    out = tmp_path_factory.mktemp("ddp")
    X, _ = make_ionic_crystals(N_CRYSTALS, random_state=0)
    save_graphs(CrystalGraphTransformer().transform(X), out / "graphs")
    (out / "train.py").write_text(SCRIPT)
    launcher = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               str(out / "train.py"), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    weights = [torch.load(out / f"weights{r}.pt") for r in range(2)]
    return out, ranks, weights


def test_two_processes_share_the_batches_and_end_with_identical_weights(two_process_run):
    _, ranks, weights = two_process_run
    assert [r["processes"] for r in ranks] == [2, 2]
    per_process = int(np.ceil(N_CRYSTALS / BATCH / 2))
    for record in ranks:
        assert record["batches"] == [per_process] * EPOCHS
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_the_loss_falls_on_every_process(two_process_run):
    _, ranks, _ = two_process_run
    for record in ranks:
        loss = record["loss"]
        assert np.mean(loss[-2:]) < 0.6 * np.mean(loss[:2]), loss


def test_a_data_parallel_model_is_saved_as_a_plain_estimator(two_process_run):
    out, ranks, _ = two_process_run
    X, _ = make_ionic_crystals(N_CRYSTALS, random_state=0)
    model = load_model(out / "model.skcgcnn")
    assert type(model) is CGCNNRegressor and model.device == "cpu"
    expected, features = model.predict(X), model.transform(X)
    for record in ranks:
        np.testing.assert_allclose(record["predictions"], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(record["features"], features, rtol=1e-5, atol=1e-6)  # every crystal, in order


def test_an_accelerator_that_moves_batches_is_refused():
    X, y = make_ionic_crystals(8, random_state=0)
    accelerator = Accelerator(cpu=True)
    with pytest.raises(ValueError, match="device_placement=False and pass device=accelerator.device"):
        AcceleratedCGCNNRegressor(accelerator=accelerator, device=accelerator.device, max_epochs=1).fit(X, y)


def test_processes_the_accelerator_does_not_see_are_refused(monkeypatch):
    X, y = make_ionic_crystals(8, random_state=0)
    accelerator = Accelerator(cpu=True, device_placement=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="started 2 processes but the Accelerator sees 1"):
        AcceleratedCGCNNRegressor(accelerator=accelerator, device=accelerator.device, max_epochs=1).fit(X, y)


def test_saving_in_one_process_round_trips(tmp_path):
    X, y = make_ionic_crystals(24, random_state=1)
    accelerator = Accelerator(cpu=True, device_placement=False)
    net = AcceleratedCGCNNRegressor(accelerator=accelerator, device=accelerator.device, max_epochs=2,
                                    random_state=0).fit(X, y)
    loaded = load_model(save_model(net, tmp_path / "m.skcgcnn"))
    assert type(loaded) is CGCNNRegressor
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def test_a_data_parallel_classifier_trains_in_one_process_and_is_saved_as_a_plain_one(tmp_path):
    from skcgcnn import CGCNNClassifier
    from skcgcnn.accelerated import AcceleratedCGCNNClassifier

    X, y = make_ionic_crystals(24, random_state=1)
    labels = np.where(y < np.median(y), "low", "high")
    accelerator = Accelerator(cpu=True, device_placement=False)
    net = AcceleratedCGCNNClassifier(accelerator=accelerator, device=accelerator.device, max_epochs=2,
                                     random_state=0).fit(X, labels)
    assert list(net.classes_) == ["high", "low"] and len(net.history) == 2
    loaded = load_model(save_model(net, tmp_path / "c.skcgcnn"))
    assert type(loaded) is CGCNNClassifier
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
