"""Train the released skcgcnn models: a fixed split per data set, then ensemble members one at a time.

Each data set gets one split, written once to ``skcgcnn/data/released/splits/<data>.csv.gz`` (columns ``id``
and ``part``: train, val, calibration, test, or duplicate). Crystals present more than once
(:func:`skcgcnn.leakage.find_duplicates`) keep their first copy; the others are marked ``duplicate`` and used
nowhere. The training part holds at most as many crystals as the paper's (Table I), at most 70 % of the rest;
validation, calibration and test share what remains equally.

Members are trained one per seed, each keeping its best validation epoch, and written as model files to
``benchmarks/release/<task>/member-<seed>.skcgcnn``; a member already there is skipped, so a long family is
built over several runs, each committing what it finished. A member longer than one run trains with
``--minutes``: it stops after the epoch that exhausts them, leaving its checkpoint in the run folder
``benchmarks/release/<task>/run-<seed>/`` (commit it), and the same command continues it where it stopped.

A run asked for two or more seeds assembles the released model once all of them are trained, so one
command rebuilds a model; ``--assemble`` assembles it from the members found, training nothing. Assembling
makes a
:class:`skcgcnn.calibrated.CalibratedEnsembleRegressor` whose error model is fitted on the validation part and
whose intervals are calibrated on the calibration part; it is scored on the test part, next to the 2018 model of
the same property on the same crystals, and written to ``skcgcnn/data/released/<name>.skcgcnn`` with its card
(also kept in ``skcgcnn/data/released/cards.json``).

    python benchmarks/release.py --task bulk_modulus --seeds 0 1 2 3 4 --epochs 120
    python benchmarks/release.py --task formation_energy --seeds 0 1 2 3 4 --epochs 100 --minutes 100
    python benchmarks/release.py --task bulk_modulus --assemble
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from common import RESULTS, emit, hardware, require
from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.callbacks import TimeBudget
from skcgcnn.checkpointing import run_callbacks
from skcgcnn.datasets import load_csv
from skcgcnn.leakage import find_duplicates
from skcgcnn.persistence import save_model
from skcgcnn.runs import RunFolder, stop_on_signals
from table1 import TASKS

ROOT = Path(__file__).resolve().parents[1]
RELEASED = ROOT / "skcgcnn" / "data" / "released"
SPLITS = RELEASED / "splits"
MEMBERS = Path(__file__).resolve().parent / "release"
PARTS = ("train", "val", "calibration", "test")
# task: (released name, property, the 2018 model of the same property)
NAMES = {
    "formation_energy": ("mp-formation-energy", "formation energy", "formation-energy-per-atom"),
    "band_gap": ("mp-band-gap", "band gap (PBE)", "band-gap"),
    "fermi_energy": ("mp-fermi-energy", "Fermi energy", "efermi"),
    "metal_classification": ("mp-metal", "metal (True) or not", "semi-metal-classification"),
    "bulk_modulus": ("mp-bulk-modulus", "log10 of the bulk modulus K_VRH", "bulk-moduli"),
    "shear_modulus": ("mp-shear-modulus", "log10 of the shear modulus G_VRH", "shear-moduli"),
    "poisson_ratio": ("mp-poisson-ratio", "Poisson ratio", "poisson-ratio"),
    "perovskites": ("perovskite-formation-energy", "heat of formation of cubic perovskites (heat_ref)", None),
}
# Units as a model card states them (short: they head the prediction column), where the benchmark's label says more,
# and what a card adds about them.
UNITS = {"perovskites": "eV/cell"}
UNITS_NOTE = {"perovskites": "per 5-atom cell, as matbench reads the source, which states no unit"}
# Principal components kept of the members' crystal features (distances, local correction). 32 rather than the
# default 16 where local_correction.py measured a lower validation MAE with them; more would break the 15 MB
# budget of the family (2 bytes per training crystal and component).
COMPONENTS = {"formation_energy": 32}
DATA = {
    "mp_cgcnn_36737": ("Materials Project (legacy database, about 2020-2021), the CGCNN paper's crystal ids",
                       "CC BY 4.0; cite Jain et al., APL Mater. 1, 011002 (2013)"),
    "mp_elasticity_3191": ("Materials Project elasticity, the CGCNN paper's elastic crystal ids",
                           "CC BY 4.0; cite de Jong et al., Sci. Data 2, 150009 (2015) and Jain et al. (2013)"),
    "perov_5": ("Castelli et al. cubic perovskites (CMR), the validation and test parts of CDVAE's perov_5 split",
                "cite Castelli et al., Energy Environ. Sci. 5, 5814 and 9034 (2012)"),
}


def make_split(ids: list[str], graphs, texts, max_train: int, seed: int = 0) -> pd.DataFrame:
    """One part per crystal: duplicates after their first copy apart, then a seeded shuffle cut into parts."""
    part = np.full(len(ids), "", dtype=object)
    for group in find_duplicates(texts, graphs=graphs, n_jobs=2):
        part[group[1:]] = "duplicate"
    kept = np.flatnonzero(part == "")
    order = np.random.default_rng(seed).permutation(kept)
    n_train = min(max_train, int(0.7 * len(order)))
    rest = len(order) - n_train
    bounds = np.cumsum([n_train, rest // 3, rest // 3])
    for name, rows in zip(PARTS, np.split(order, bounds)):
        part[rows] = name
    return pd.DataFrame({"id": ids, "part": part})


def split_of(data: str, ids: list[str], graphs, texts, max_train: int) -> pd.DataFrame:
    """The data set's published split, made on first use."""
    path = SPLITS / f"{data}.csv.gz"
    if path.exists():
        split = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        split = make_split(ids, graphs, texts, max_train)
        SPLITS.mkdir(parents=True, exist_ok=True)
        split.to_csv(path, index=False)
    return split


def task_rows(task: str, ids: list[str], split: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The task's targets, the rows of its crystals in the data set, and the part of the split each is in."""
    path, column, query, transform, *_ = TASKS[task]
    _, y, task_ids = load_csv(path, target=column, query=query, missing="drop", parse=False)
    if transform is not None:
        y = transform(y)
    position = {crystal: i for i, crystal in enumerate(ids)}
    rows = np.array([position[crystal] for crystal in task_ids])
    return y, rows, split["part"].to_numpy()[rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="members to train")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for featurizing")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training time of each member in this run; an unfinished member is continued by the "
                             "next run from its checkpoint")
    parser.add_argument("--assemble", action="store_true",
                        help="make the released model from the members trained so far, calibrate and score it "
                             "(a run asked for two or more seeds does so once they are all trained)")
    parser.add_argument("--results", type=Path, default=RESULTS / "release.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path, *_, metric, _, _, unit = TASKS[args.task]
    # The split covers the whole data set, so that every task of one data set shares it.
    texts, _, ids = load_csv(require(path), target=None, parse=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = CrystalGraphTransformer(n_jobs=args.n_jobs).transform(texts)
    max_train = max(n for p, *_, n, _ in TASKS.values() if p == path)
    split = split_of(path.parent.name, ids, graphs, texts, max_train)
    if split["id"].tolist() != list(ids):
        sys.exit(f"the split file of {path.parent.name} does not list the data set's ids in order")
    y, rows, part = task_rows(args.task, ids, split)
    train, val = rows[part == "train"], rows[part == "val"]
    y_train, y_val = y[part == "train"], y[part == "val"]
    if args.assemble:
        assemble(args, graphs, texts, y, rows, part, unit)
        return
    cls = CGCNNClassifier if metric == "roc_auc" else CGCNNRegressor
    out = MEMBERS / args.task
    for seed in args.seeds:
        target = out / f"member-{seed}.skcgcnn"
        if not target.exists():
            train_member(args, cls, seed, target, graphs[train], y_train, graphs[val], y_val, unit)
    if len(args.seeds) > 1 and all((out / f"member-{seed}.skcgcnn").exists() for seed in args.seeds):
        assemble(args, graphs, texts, y, rows, part, unit)


def train_member(args, cls, seed: int, target: Path, X_train, y_train, X_val, y_val, unit: str) -> None:
    """Train (or continue) one member in its run folder; write it as a model file once all its epochs are done."""
    folder_path = target.with_name(f"run-{seed}")
    if (folder_path / RunFolder.RECORD).exists():
        folder = RunFolder.open(folder_path)
        folder.check_checkpoint()
        if folder.record.get("epochs") != args.epochs:
            sys.exit(f"{folder_path} trains {folder.record.get('epochs')} epochs, not {args.epochs}; continue it "
                     "with its own --epochs, or remove it")
    else:
        folder = RunFolder.create(folder_path)
    done = folder.epochs_done()
    folder.update(status="running", epochs=args.epochs, seed=seed)
    start = time.perf_counter()
    with stop_on_signals() as received:  # SIGTERM, as Ctrl-C, ends the run at its last checkpoint, as interrupted
        callbacks = run_callbacks(folder, CrystalGraphTransformer(), X_val, y_val, cls is CGCNNClassifier,
                                  args.epochs, signals=received)
        if args.minutes is not None:
            callbacks.append(("budget", TimeBudget(args.minutes)))
        net = cls(max_epochs=args.epochs, device=args.device, random_state=seed, callbacks=callbacks, verbose=1,
                  callbacks__lr_scheduler=None, callbacks__print_log__keys_ignored=["held_out_score_best"])
        net.fit(X_train, y_train, epochs=args.epochs - done)
    train_s = folder.record.get("train_s", 0.0) + time.perf_counter() - start
    if net.interrupted_:
        folder.update(status="interrupted", train_s=round(train_s, 1))
        sys.exit(f"member {seed} was interrupted; its checkpoint of epoch {folder.epochs_done()} is in {folder_path}")
    if len(net.history) < args.epochs:
        folder.update(status="paused", train_s=round(train_s, 1))
        print(f"member {seed}: {len(net.history)} of {args.epochs} epochs done; the same command continues it from "
              f"{folder_path}", flush=True)
        return
    # The best epoch's weights are loaded at the end of training; the file holds no callbacks.
    save_model(net, target)
    scores = net.history[:, "held_out_score"]
    record = {"benchmark": "release", "task": args.task, "seed": seed, "unit": unit, "n_train": len(y_train),
              "n_val": len(y_val), "epochs": args.epochs, "best_epoch": int(np.argmax(scores)) + 1,
              "val_score": round(float(np.max(scores)), 5), "train_s": round(train_s, 1),
              "file_kib": round(target.stat().st_size / 1024, 1), "device": args.device,
              "hardware": hardware(args.device), "command": "python " + shlex.join(sys.argv)}
    target.with_suffix(".json").write_text(json.dumps(record) + "\n")
    folder.discard()
    emit(record, args.results)


def assemble(args, graphs, texts, y, rows, part, unit) -> None:
    """The released model from the trained members: calibrated, scored on the test part, written with its card."""
    from skcgcnn.persistence import load_model

    files = sorted((MEMBERS / args.task).glob("member-*.skcgcnn"), key=lambda f: int(f.stem.split("-")[1]))
    if len(files) < 2:
        sys.exit(f"{args.task}: {len(files)} members trained; an ensemble needs two or more")
    by_part = {name: (graphs[rows[part == name]], y[part == name]) for name in PARTS}
    name, prop, old = NAMES[args.task]
    target = RELEASED / f"{name}.skcgcnn"
    classification = TASKS[args.task][4] == "roc_auc"
    members = [load_model(f) for f in files]
    if classification:
        model, scores = _score_classifier(members, by_part, target)
    else:
        model, scores = _score_regressor(members, by_part, target, COMPONENTS.get(args.task, 16))
    if old is not None:
        # The 2018 model reads graphs of the original rule; its test crystals may have been its training crystals.
        from skcgcnn.pretrained import load

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            old_model = load(old)
            X_old = [texts[i] for i in rows[part == "test"]]
            y_test = by_part["test"][1]
            if classification:  # its class 1 is "metal"
                scores["roc_auc_2018_model"] = round(float(roc_auc_score(y_test, old_model.predict_proba(X_old)[:, 1])),
                                                     4)
            else:
                scores["mae_2018_model"] = round(float(np.mean(np.abs(old_model.predict(X_old) - y_test))), 5)
    data = Path(TASKS[args.task][0]).parent.name
    card = {"name": name, "property": prop, "target": _target_column(args.task),
            "units": UNITS.get(args.task, unit),
            **({"units_note": UNITS_NOTE[args.task]} if args.task in UNITS_NOTE else {}),
            "task": "classification" if classification else "regression",
            "data": DATA[data][0], "data_licence": DATA[data][1], "data_folder": data, "split": f"splits/{data}.csv.gz",
            "n_train": int(np.sum(part == "train")), "n_val": int(np.sum(part == "val")),
            "n_calibration": int(np.sum(part == "calibration")), "n_test": int(np.sum(part == "test")),
            "members": len(files), "recipe": _recipe(args.task), "test": scores, "model_2018": old,
            "reference": "Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018)"}
    model.card_ = card
    save_model(model, target, force=True, weights="float16")
    cards_file = RELEASED / "cards.json"
    cards = json.loads(cards_file.read_text()) if cards_file.exists() else {}
    cards[name] = card
    cards_file.write_text(json.dumps(dict(sorted(cards.items())), indent=1) + "\n")
    emit({"benchmark": "release_assemble", "task": args.task, **scores, "members": len(files),
          "file_kib": round(target.stat().st_size / 1024, 1), "hardware": hardware("cpu"),
          "command": "python " + shlex.join(sys.argv)}, args.results)


def _by_fifth(values: np.ndarray, order: np.ndarray) -> list[float]:
    return [round(float(values[chunk].mean()), 3) for chunk in np.array_split(order, 5)]


def _score_regressor(members, by_part, target, n_components):
    """A calibrated regression ensemble of ``members``, written as it ships and scored on the test part."""
    from scipy.stats import spearmanr

    from skcgcnn.calibrated import CalibratedEnsembleRegressor
    from skcgcnn.persistence import load_model

    model = CalibratedEnsembleRegressor(n_estimators=len(members), n_components=n_components)
    model.estimators_ = members
    model.graph_settings_ = members[0].graph_settings_
    model.calibrate(*by_part["train"], *by_part["val"], *by_part["calibration"])
    # Half-precision weights keep the family within its size budget: the rounded members are calibrated again,
    # and what is scored is the file as read back.
    save_model(model, target, force=True, weights="float16")
    model = load_model(target).calibrate(*by_part["train"], *by_part["val"], *by_part["calibration"])
    save_model(model, target, force=True, weights="float16")
    model = load_model(target)
    X_test, y_test = by_part["test"]
    mean, std = model.predict(X_test, return_std=True)
    error = np.abs(mean - y_test)
    _, interval = model.predict_interval(X_test, confidence_level=0.9)
    inside = (interval[:, 0] <= y_test) & (y_test <= interval[:, 1])
    members = np.stack([m.predict(X_test) for m in model.estimators_])
    each = np.abs(members - y_test).mean(axis=1)
    return model, {"mae": round(float(error.mean()), 5), "member_mae_mean": round(float(np.mean(each)), 5),
                   "mae_members_mean": round(float(np.abs(members.mean(axis=0) - y_test).mean()), 5),
                   "correction_weight": round(float(model.correction_[0]), 3),
                   "spearman_error_std": round(float(spearmanr(error, std).statistic), 3),
                   "coverage_90": round(float(inside.mean()), 3),
                   "coverage_90_by_fifth_of_std": _by_fifth(inside, np.argsort(std)),
                   "width_90_mean": round(float(np.mean(interval[:, 1] - interval[:, 0])), 5)}


def _score_classifier(members, by_part, target):
    """A calibrated classification ensemble of ``members`` (sets calibrated on the calibration part), scored."""
    from scipy.stats import spearmanr

    from skcgcnn.calibrated import CalibratedEnsembleClassifier
    from skcgcnn.persistence import load_model

    model = CalibratedEnsembleClassifier(n_estimators=len(members))
    model.estimators_ = members
    model.graph_settings_ = members[0].graph_settings_
    model.classes_ = np.unique(np.concatenate([m.classes_ for m in members]))
    save_model(model, target, force=True, weights="float16")
    model = load_model(target).calibrate(*by_part["calibration"])
    save_model(model, target, force=True, weights="float16")
    model = load_model(target)
    X_test, y_test = by_part["test"]
    proba, std = model.predict_proba(X_test, return_std=True)
    best = proba.argmax(axis=1)
    wrong = (model.classes_[best] != y_test).astype(float)
    spread = std[np.arange(len(best)), best]
    _, sets = model.predict_set(X_test, confidence_level=0.9)
    inside = sets[np.arange(len(y_test)), np.searchsorted(model.classes_, y_test)].astype(float)
    positive = list(model.classes_).index(True)
    each = [float(roc_auc_score(y_test, m.predict_proba(X_test)[:, list(m.classes_).index(True)]))
            for m in model.estimators_]
    return model, {"roc_auc": round(float(roc_auc_score(y_test, proba[:, positive])), 4),
                   "accuracy": round(1 - float(wrong.mean()), 4), "member_roc_auc_mean": round(float(np.mean(each)), 4),
                   "spearman_error_std": round(float(spearmanr(wrong, spread).statistic), 3),
                   "coverage_90": round(float(inside.mean()), 3),
                   "coverage_90_by_fifth_of_std": _by_fifth(inside, np.argsort(spread)),
                   "set_size_90_mean": round(float(sets.sum(axis=1).mean()), 3)}


def _target_column(task: str) -> str:
    """The short name of what the model predicts: the data's column, and how it was transformed."""
    column, transform = TASKS[task][1], TASKS[task][3]
    if task == "metal_classification":
        return "is_metal"
    return f"log10_{column}" if transform is np.log10 else column


def _recipe(task: str) -> dict:
    """How the members were trained, from the record written beside each."""
    runs = [json.loads(f.read_text()) for f in sorted((MEMBERS / task).glob("member-*.json"))]
    recipe = "AdamW, lr 1e-3, cosine schedule, batch 64"
    estimator = (f"CGCNNClassifier() defaults ({recipe}, dropout 0.5)" if TASKS[task][4] == "roc_auc"
                 else f"CGCNNRegressor() defaults ({recipe})")
    return {"estimator": estimator, "seeds": [r["seed"] for r in runs],
            "epochs": sorted({r["epochs"] for r in runs}), "best_epochs": [r["best_epoch"] for r in runs],
            "commands": sorted({r["command"] for r in runs})}


if __name__ == "__main__":
    main()
