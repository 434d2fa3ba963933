import json

import joblib
import numpy as np
import pandas as pd
import pytest

from sklearn.pipeline import Pipeline

from conftest import write_original_layout
from skcgcnn.cli import main
from skcgcnn.persistence import load_model
from skcgcnn.datasets import make_ionic_crystals

TRAIN = ["--epochs", "2", "--batch-size", "16", "--atom-fea-len", "16", "--h-fea-len", "16"]


@pytest.fixture(scope="module")
def crystals():
    return make_ionic_crystals(40, random_state=5)


@pytest.fixture
def original_layout(tmp_path, crystals):
    return write_original_layout(tmp_path / "data", *crystals, prefix="id")


def test_fit_then_predict_on_the_original_layout(tmp_path, original_layout, capsys):
    run = tmp_path / "out" / "run"
    assert main(["fit", str(original_layout), "-o", str(run), *TRAIN]) == 0
    out = capsys.readouterr().out
    assert "40 crystals: 32 for training, 4 for validation, 4 for testing" in out
    metrics = json.loads((run / "run.json").read_text())["metrics"]
    assert set(metrics["test"]) == {"mae", "r2", "mae_of_the_training_mean"} and metrics["test"]["mae"] > 0
    summary = next(line for line in out.splitlines() if line.startswith("test "))
    assert f"{metrics['test']['mae']:.4g}" in summary.split()
    model = run / "model.skcgcnn"
    assert model.is_file() and (run / "parity.png").is_file()

    single = original_layout / "id3.cif"
    predictions = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(single), str(original_layout), "-o", str(predictions)]) == 0
    table = pd.read_csv(predictions, keep_default_na=False)
    assert list(table.columns) == ["id", "prediction", "unseen_elements"]
    assert len(table) == 41 and (table.unseen_elements == "").all()
    # id3 is given twice (alone, then in the folder): its second row takes the file's path as id
    assert table.id[0] == "id3" and str(single) in set(table.id)
    assert table.prediction.iloc[0] == pytest.approx(table.set_index("id").prediction[str(single)])
    folder_rows = table.iloc[1:].set_index("id").prediction
    files = [original_layout / f"id{i}.cif" for i in range(40)]
    expected = load_model(model).predict(files)
    np.testing.assert_allclose([folder_rows[str(f) if i == 3 else f"id{i}"] for i, f in enumerate(files)], expected,
                               rtol=1e-5)
    assert main(["predict", str(model), str(original_layout), "-o", str(predictions), "--force"]) == 0
    assert sorted(pd.read_csv(predictions).id) == sorted(f"id{i}" for i in range(40))  # the ids of id_prop.csv

    assert main(["predict", str(model), str(single), "-o", str(predictions)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["fit", str(original_layout), "-o", str(run), *TRAIN]) == 2
    assert "holds a run; pass --force to replace it, or --resume to continue it" in capsys.readouterr().err
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_fit_takes_the_neighbour_rule(tmp_path, original_layout):
    assert main(["fit", str(original_layout), "-o", str(tmp_path / "run"), "--nbr-rule", "first", "--tie-tol",
                 "0.01", *TRAIN]) == 0
    settings = load_model(tmp_path / "run" / "model.skcgcnn")[-1].graph_settings_
    assert (settings.nbr_rule, settings.tie_tol) == ("first", 0.01)


def test_classification_from_csv_with_text_labels(tmp_path, crystals):
    structures, y = crystals
    frame = pd.DataFrame({"id": [f"c{i}" for i in range(len(y))], "cif": [s.to(fmt="cif") for s in structures],
                          "kind": np.where(y < np.median(y), "deep", "shallow")})
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    assert main(["fit", str(data), "--target", "kind", "-o", str(tmp_path / "run"), *TRAIN]) == 0
    model = tmp_path / "run" / "model.skcgcnn"
    assert (tmp_path / "run" / "roc.png").is_file()
    tested = pd.read_csv(tmp_path / "run" / "test_predictions.csv")
    assert list(tested.columns) == ["id", "target", "prediction", "proba_deep", "proba_shallow"]
    predictions = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(data), "-o", str(predictions)]) == 0
    table = pd.read_csv(predictions)
    assert list(table.columns) == ["id", "kind", "proba_deep", "proba_shallow", "unseen_elements"]
    assert list(table.id) == list(frame.id)
    np.testing.assert_allclose(table.proba_deep + table.proba_shallow, 1.0, rtol=1e-5)


def test_tune_with_a_journal_storage_resumes(tmp_path, original_layout, capsys):
    journal = tmp_path / "tune.log"
    args = ["tune", str(original_layout), "--n-trials", "2", *TRAIN, "--storage", f"journal:{journal}",
            "--study-name", "s", "-o", str(tmp_path / "best.skcgcnn")]
    assert main(args) == 0
    assert "best of 2 completed trials" in capsys.readouterr().out
    assert main(args) == 2  # the first run's model is not overwritten without --force
    assert "exists; pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert "best of 4 completed trials" in capsys.readouterr().out
    assert isinstance(load_model(tmp_path / "best.skcgcnn"), Pipeline)


def test_a_bad_cif_names_its_path(tmp_path, original_layout, capsys):
    (original_layout / "id7.cif").write_text("data_broken\n_cell_length_a 1\n")
    assert main(["fit", str(original_layout), "-o", str(tmp_path / "run"), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert "id7.cif" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # a run that trained nothing leaves no folder that blocks a retry


def test_errors_exit_with_status_2(tmp_path, capsys):
    run = ["-o", str(tmp_path / "run")]
    assert main(["fit", str(tmp_path / "missing.csv"), "--target", "y", *run]) == 2
    assert "missing.csv does not exist" in capsys.readouterr().err
    (tmp_path / "d.csv").write_text("id,cif\n1,x\n")
    assert main(["fit", str(tmp_path / "d.csv"), *run]) == 2
    assert "--target is required" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_demo_runs_a_small_fit(capsys):
    assert main(["demo", "--n-samples", "30", "--epochs", "2"]) == 0
    assert "test MAE" in capsys.readouterr().out


def test_fit_on_a_matbench_file(tmp_path, crystals, capsys):
    import gzip

    structures, y = crystals
    payload = {"index": [f"mb-{i}" for i in range(len(y))], "columns": ["structure", "e_form"],
               "data": [[s.as_dict(), float(v)] for s, v in zip(structures, y)]}
    with gzip.open(tmp_path / "task.json.gz", "wt") as handle:
        json.dump(payload, handle)
    assert main(["fit", str(tmp_path / "task.json.gz"), "-o", str(tmp_path / "run"), *TRAIN]) == 0
    assert "40 crystals: 32 for training" in capsys.readouterr().out


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_predict_refuses_pickles_unless_trusted(tmp_path, original_layout, capsys):
    assert main(["fit", str(original_layout), "-o", str(tmp_path / "run"), "--format", "joblib", *TRAIN]) == 0
    trusted = tmp_path / "run" / "model.joblib"
    hostile = tmp_path / "shared.joblib"
    joblib.dump(_Hostile(tmp_path / "marker"), hostile)
    out = tmp_path / "p.csv"
    for model in (trusted, hostile):
        capsys.readouterr()
        assert main(["predict", str(model), str(original_layout), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{model}: refused unread" in err and "--trust-pickle" in err
    assert not (tmp_path / "marker").exists()
    assert main(["predict", str(trusted), str(original_layout), "-o", str(out), "--trust-pickle"]) == 0
    assert len(pd.read_csv(out)) == 40
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "runs any code it holds" in " ".join(capsys.readouterr().out.split())


def test_tune_without_a_completed_trial_ends_in_one_line(tmp_path, original_layout, capsys):
    output = tmp_path / "best.skcgcnn"
    assert main(["tune", str(original_layout), "--timeout", "0", "-o", str(output), *TRAIN]) == 2
    err = capsys.readouterr().err
    # The last line is the command's own: an uncaught exception would end in its traceback's last line.
    assert err.rstrip().splitlines()[-1].startswith("skcgcnn: error: no trial completed (0 failed, 0 pruned, 0 ")
    assert not output.exists()


def test_fit_takes_validation_and_test_crystals_given_apart(tmp_path, crystals, capsys):
    structures, y = crystals
    train = write_original_layout(tmp_path / "train", structures[:30], y[:30], prefix="a")
    val = write_original_layout(tmp_path / "val", structures[30:36], y[30:36], prefix="b")
    test = write_original_layout(tmp_path / "test", structures[36:], y[36:], prefix="c")
    run = tmp_path / "run"
    assert main(["fit", str(train), "--val-data", str(val), "--test-data", str(test), "-o", str(run), *TRAIN]) == 0
    assert "40 crystals: 30 for training, 6 for validation, 4 for testing" in capsys.readouterr().out
    sets = pd.read_csv(run / "split.csv").set_index("id")["set"]
    assert (sets[[f"b{i}" for i in range(6)]] == "val").all() and (sets[[f"c{i}" for i in range(4)]] == "test").all()
    assert sorted(pd.read_csv(run / "test_predictions.csv").id) == [f"c{i}" for i in range(4)]


@pytest.mark.parametrize("schedule, lowered", [("constant", False), ("plateau", True), ("cosine", True)])
def test_the_learning_rate_schedules(tmp_path, original_layout, schedule, lowered):
    import torch

    run = tmp_path / "run"
    # A rate this high makes the validation score stall at once, so the plateau schedule acts within 4 epochs.
    args = ["fit", str(original_layout), "-o", str(run), "--lr-schedule", schedule, "--lr-patience", "0",
            "--lr", "0.5", *TRAIN[2:], "--epochs", "4"]
    assert main(args) == 0
    state = torch.load(run / "checkpoint" / "optimizer.pt", weights_only=True)
    assert (state["param_groups"][0]["lr"] < 0.5) is lowered


def test_drop_missing_trains_on_the_rows_with_a_target(tmp_path, crystals, capsys):
    structures, y = crystals
    target = [f"{v}" for v in y]
    target[5] = ""
    pd.DataFrame({"id": [f"c{i}" for i in range(len(y))], "cif": [s.to(fmt="cif") for s in structures],
                  "energy": target}).to_csv(tmp_path / "data.csv", index=False)
    args = ["fit", str(tmp_path / "data.csv"), "--target", "energy", *TRAIN]
    assert main([*args, "-o", str(tmp_path / "a")]) == 2
    assert "c5" in capsys.readouterr().err
    assert main([*args, "--drop-missing", "-o", str(tmp_path / "b")]) == 0
    assert "39 crystals" in capsys.readouterr().out
    assert "c5" not in set(pd.read_csv(tmp_path / "b" / "split.csv").id)


def test_tune_can_search_the_graph_settings(tmp_path, original_layout, capsys):
    output = tmp_path / "best.skcgcnn"
    assert main(["tune", str(original_layout), "--n-trials", "1", "--search-graphs", "-o", str(output), *TRAIN]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("best of"))
    params = json.loads(line[line.index("{"):])
    assert "best of 1 completed trials" in line and {"graph__radius", "graph__max_num_nbr"} <= set(params)
    best = load_model(output)
    assert isinstance(best, Pipeline) and best[0].radius == params["graph__radius"]


def test_the_command_line_and_python_train_the_same_model_by_default(tmp_path, original_layout, crystals):
    from skcgcnn import CGCNNRegressor
    from skcgcnn.datasets import load_cgcnn_dir

    size = {"atom_fea_len": 8, "h_fea_len": 8, "n_conv": 1, "max_epochs": 3}
    options = ["--atom-fea-len", "8", "--h-fea-len", "8", "--n-conv", "1", "--epochs", "3"]
    run = tmp_path / "run"
    assert main(["fit", str(original_layout), "-o", str(run), "--val-size", "0", "--test-size", "0",
                 "--duplicates", "skip", "--seed", "3", *options]) == 0
    X, y, _ = load_cgcnn_dir(original_layout)
    python = CGCNNRegressor(random_state=3, **size).fit(X, y)
    np.testing.assert_allclose(load_model(run / "model.skcgcnn").predict(X), python.predict(X), rtol=1e-6)
