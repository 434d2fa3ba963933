"""What a materials scientist reads: figures, messages and the command line say what they mean."""

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from conftest import TINY_OPTIONS, write_original_layout  # noqa: E402
from skcgcnn import CGCNNClassifier, CrystalGraphTransformer  # noqa: E402
from skcgcnn.cli import build_parser, main  # noqa: E402
from skcgcnn.datasets import load_cgcnn_dir, make_ionic_crystals  # noqa: E402
from skcgcnn.plotting import plot_roc  # noqa: E402
from skcgcnn.tuning import default_search_space  # noqa: E402

SMALL = ["--epochs", "2", *TINY_OPTIONS]


@pytest.fixture(scope="module")
def crystals():
    return make_ionic_crystals(40, random_state=4)


def _layout(folder, crystals, labels):
    return write_original_layout(folder, crystals[0], labels)


def test_plot_roc_applies_pos_label_to_the_right_column():
    y = np.array(["high", "high", "low", "low"])
    proba = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]])  # columns follow classes_ = [high, low]
    ax = plot_roc(y, proba, pos_label="high")
    assert "AUC = 1.00" in ax.get_legend().get_texts()[0].get_text() and "high" in ax.get_title()
    with pytest.raises(ValueError, match="pos_label='hgih' is not one of the labels"):
        plot_roc(y, proba, pos_label="hgih")
    plt.close("all")


def test_a_classifier_refuses_continuous_targets(crystals):
    X, y = crystals
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        CGCNNClassifier(max_epochs=1).fit(X, y)


def test_classification_from_the_original_layout(tmp_path, crystals, capsys):
    _, y = crystals
    text = _layout(tmp_path / "text", crystals, np.where(y < np.median(y), "metal", "insulator"))
    assert set(load_cgcnn_dir(text)[1]) == {"metal", "insulator"}
    assert main(["fit", str(text), "-o", str(tmp_path / "a"), *SMALL]) == 0
    tested = pd.read_csv(tmp_path / "a" / "test_predictions.csv")
    assert {"proba_metal", "proba_insulator"} <= set(tested.columns)

    binary = _layout(tmp_path / "binary", crystals, (y < np.median(y)).astype(int))
    assert main(["fit", str(binary), "-o", str(tmp_path / "b"), *SMALL]) == 0
    assert "pass --task classification for a classifier" in capsys.readouterr().out
    assert main(["fit", str(binary), "--task", "classification", "-o", str(tmp_path / "c"), *SMALL]) == 0
    assert main(["predict", str(tmp_path / "c" / "model.skcgcnn"), str(binary), "-o", str(tmp_path / "p.csv")]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    assert {"proba_0", "proba_1"} <= set(table.columns) and set(table.prediction) <= {0, 1}


def test_fit_reports_errors_with_units_free_positive_columns_and_a_baseline(tmp_path, crystals, capsys):
    _, y = crystals
    data = _layout(tmp_path / "d", crystals, y)
    assert main(["fit", str(data), "-o", str(tmp_path / "run"), *SMALL]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "epoch" in line and "train_loss" in line)
    assert "val_mae" in header and "held_out_score" not in header
    assert "MAE of the training mean" in out


def test_wrong_target_is_refused_before_parsing_with_the_valid_range(tmp_path, crystals, capsys):
    _, y = crystals
    data = _layout(tmp_path / "d", crystals, [f"{v},{2 * v}" for v in y])
    (data / "mp-3.cif").write_text("not a cif")  # would fail if the structures were parsed first
    assert main(["fit", str(data), "--target", "2", "-o", str(tmp_path / "run")]) == 2
    assert "id_prop.csv's 2 target(s), 0 to 1; got '2'" in capsys.readouterr().err


def test_every_option_of_fit_shows_help_and_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    decay = "the optimizer's own, 0.01 for adamw and 0 for adam and sgd, as in Python"
    for option, default in [("--radius", "8.0"), ("--max-num-nbr", "12"), ("--step", "0.2"),
                            ("--atom-fea-len", "64"), ("--n-conv", "3"), ("--h-fea-len", "128"), ("--n-h", "1"),
                            ("--lr", "0.001"), ("--epochs", "100"), ("--batch-size", "64"),
                            ("--weight-decay", decay)]:
        shown = text[text.index(f"{option} {option[2:].upper().replace('-', '_')} "):]
        assert f"(default: {default})" in shown[:200], option


def test_load_cgcnn_dir_takes_the_table_for_its_folder(tmp_path, crystals):
    _, y = crystals
    data = _layout(tmp_path / "diel", crystals, y)
    assert load_cgcnn_dir(data / "id_prop.csv")[2][:2] == ["mp-0", "mp-1"]


def test_the_neighbour_shortage_warning_points_at_the_caller(crystals):
    X, _ = crystals
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CrystalGraphTransformer(radius=3.0).transform(X[:5])
    assert caught and all(w.filename == __file__ for w in caught)


def test_the_default_search_space_does_not_ask_for_more_neighbours_than_a_small_radius_holds():
    from sklearn.pipeline import Pipeline

    from skcgcnn import CGCNNRegressor

    space = default_search_space(Pipeline([("graph", CrystalGraphTransformer()), ("cgcnn", CGCNNRegressor())]))
    assert space["graph__radius"].low >= 6.0


def test_no_colour_codes_reach_redirected_output(capsys):
    assert main(["demo", "--n-samples", "30", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "epoch" in out and "\x1b[" not in out


def test_messages_name_what_is_missing_and_what_comes_close(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.startswith("skcgcnn 0.")
    assert main(["predict", "band-gpa", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'band-gap' or 'mp-band-gap'?" in err and "skcgcnn models" in err
    assert main(["fit", str(tmp_path / "nothere.csv")]) == 2
    assert f"{tmp_path / 'nothere.csv'} does not exist" in capsys.readouterr().err
    (tmp_path / "data.csv").write_text("id,cif,band_gap,efermi\n")
    assert main(["fit", str(tmp_path / "data.csv"), "-o", str(tmp_path / "run")]) == 2
    assert "the columns of" in (err := capsys.readouterr().err) and err.rstrip().endswith("band_gap, efermi")


def test_a_warning_raised_every_epoch_is_a_single_line_of_the_output_and_the_log(tmp_path, crystals, capsys):
    from pymatgen.core import Lattice, Structure

    structures, y = crystals
    necl = Structure(Lattice.cubic(5.5), ["Ne", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    data = write_original_layout(tmp_path / "d", [*structures[:30], necl], [*y[:30], -3.0])
    sets = ["train"] * 24 + ["val"] * 3 + ["test"] * 3 + ["val"]
    pd.DataFrame({"id": [f"mp-{i}" for i in range(31)], "set": sets}).to_csv(tmp_path / "split.csv", index=False)
    run = tmp_path / "run"
    assert main(["fit", str(data), "--split", str(tmp_path / "split.csv"), "-o", str(run), *SMALL,
                 "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "absent from the training data" in line]
    assert lines == ["warning: 1 of 4 inputs hold elements absent from the training data (Ne): their predictions "
                     "are extrapolations; unseen_elements(X) lists them per input"]
    assert lines[0] in (run / "log.txt").read_text()


def test_the_target_name_and_unit_reach_the_summary_and_the_record(tmp_path, crystals, capsys):
    import json

    _, y = crystals
    data = _layout(tmp_path / "d", crystals, y)
    run = tmp_path / "run"
    assert main(["fit", str(data), "-o", str(run), *SMALL, "--target-name", "Ewald energy", "--unit", "eV/atom"]) == 0
    out = capsys.readouterr().out
    assert "MAE (eV/atom)" in next(line for line in out.splitlines() if line.lstrip().startswith("MAE"))
    assert json.loads((run / "run.json").read_text())["target"] == {"name": "Ewald energy", "unit": "eV/atom"}
    assert main(["predict", str(run / "model.skcgcnn"), str(data), "-o", str(tmp_path / "p.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["id", "Ewald energy (eV/atom)", "unseen_elements"]
