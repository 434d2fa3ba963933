"""Training and prediction speed of CGCNNRegressor, and the choice of its default optimizer.

Parts (``--part``, default all):

``speed``
    Per-epoch training throughput (crystals/s, achieved FLOP/s from counted
    multiply-adds), prediction throughput and peak RSS of the default
    architecture on the first ``--n-mp`` crystals of mp_cgcnn_36737
    (formation energy) and on perov_5, next to the straightforward
    implementation in ``baseline.py`` on the same graphs.
``full_epoch``
    The same on the 60 % training split of the formation-energy task
    (about 22k crystals), the size the Table I runs train on.
``optimizers``
    Test MAE of training recipes at a fixed epoch budget, with the wall
    time each took: optimizers and schedules, and on top of the default
    the loss (L1), weight averaging of the last quarter of the epochs, a
    composition baseline (a linear fit on element fractions, the network
    learning the rest), a wider and a deeper network. On perov_5
    (heat_ref, 80/10/10 split with seed 0) or, with ``--recipe-data
    formation_energy``, on the Table I formation-energy split (60/20/20,
    seed 0).

    python benchmarks/train.py --device cpu
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import LRScheduler
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import train_test_split
from torch.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR, OneCycleLR

import baseline
from common import MP_CSV, PEROV_CSV, RESULTS, emit, hardware, peak_rss_mib, require
from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.callbacks import WeightAveraging
from skcgcnn.datasets import load_csv
from skcgcnn.graphs import NBR_RULES


def forward_macs(graphs, atom_fea_len=64, n_conv=3, h_fea_len=128, n_h=1) -> int:
    """Multiply-adds of one forward pass of the factorised model over ``graphs``."""
    n_atoms, n_edges = int(graphs.n_atoms.sum()), len(graphs.nbr_idx)
    n_gauss = len(graphs.settings.gaussian_centers)
    f = atom_fea_len
    per_conv = n_atoms * f * 4 * f + n_edges * n_gauss * 2 * f
    head = len(graphs) * (f * h_fea_len + (n_h - 1) * h_fea_len**2 + h_fea_len)
    embed = n_atoms * graphs.settings.atom_features.table.shape[1] * f
    return n_conv * per_conv + head + embed


def featurize(texts, args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CrystalGraphTransformer(nbr_rule=args.nbr_rule, n_jobs=args.n_jobs).transform(texts)


def speed(name, graphs, y, args):
    common = {"benchmark": "train_speed", "data": name, "n_crystals": len(graphs),
              "n_atoms": int(graphs.n_atoms.sum()), "n_edges": len(graphs.nbr_idx),
              "nbr_rule": graphs.settings.nbr_rule,
              "device": args.device, "hardware": hardware(args.device),
              "flush_denormal": args.flush_denormal, "batch_size": args.batch_size, "lr": args.lr,
              "predict_batch_size": args.predict_batch_size or args.batch_size,
              "compile": args.compile}
    train_flop = 3 * 2 * forward_macs(graphs)  # backward costs about twice the forward

    def skcgcnn_epoch(precision: str) -> tuple[float, CGCNNRegressor]:
        batches = {"auto": {}, "host": {"dataset__device": None}, "device": {"dataset__device": args.device}}
        options = {**batches[args.batches], **({"lr": args.lr} if args.lr else {}),
                   **({"compile": True, "compile__dynamic": True} if args.compile else {})}
        reg = CGCNNRegressor(max_epochs=args.speed_epochs, random_state=0, device=args.device, precision=precision,
                             batch_size=args.batch_size, **options)
        if args.predict_batch_size:
            reg.set_params(iterator_valid__batch_size=args.predict_batch_size)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(args.device)
        reg.fit(graphs, y)
        epoch_s = min(h["dur"] for h in reg.history[1:] or reg.history)
        gpu = ({"peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated(args.device) / 2**20)}
               if args.device.startswith("cuda") else {})
        resident = reg.get_dataset(graphs[:1]).resident is not None
        emit({**common, "implementation": "skcgcnn", "precision": precision,
              "batches": "gathered on the device" if resident else "built on the host", "epoch_s": round(epoch_s, 3),
              "crystals_per_s": round(len(graphs) / epoch_s, 1),
              "train_gflop_per_epoch": round(train_flop / 1e9, 1),
              "achieved_gflop_per_s": round(train_flop / epoch_s / 1e9, 1), **gpu}, args.results)
        return epoch_s, reg

    # Every float32 timing comes before the bfloat16 fit: after one in the same process, a float32
    # epoch was 20-25 % slower (16.3-17.7 s against 13.7 s on the formation-energy split).
    float32_s, reg = skcgcnn_epoch("float32")
    start = time.perf_counter()
    reg.predict(graphs)
    predict_s = time.perf_counter() - start
    emit({**common, "implementation": "skcgcnn", "step": "predict", "seconds": round(predict_s, 3),
          "crystals_per_s": round(len(graphs) / predict_s, 1), "peak_rss_mib": round(peak_rss_mib())},
         args.results)
    base_s = None
    if args.device == "cpu" and not args.skip_baseline:
        durations = baseline.train_epochs(graphs, y, epochs=2, batch_size=args.batch_size)
        base_s = min(durations[1:] or durations)
    bfloat16_s, _ = skcgcnn_epoch("bfloat16")
    if base_s is not None:
        emit({**common, "implementation": "baseline", "precision": "float32", "epoch_s": round(base_s, 3),
              "crystals_per_s": round(len(graphs) / base_s, 1),
              "speedup_of_skcgcnn": round(base_s / float32_s, 2),
              "speedup_of_skcgcnn_bfloat16": round(base_s / bfloat16_s, 2),
              "target_speedup": 3}, args.results)


def full_epoch(args):
    """One epoch over the formation-energy training split of Table I (60 % of mp_cgcnn_36737)."""
    texts, y, _ = load_csv(require(args.mp), target="formation_energy_per_atom", parse=False)
    graphs = featurize(texts, args)
    train, _ = train_test_split(np.arange(len(graphs)), train_size=0.6, random_state=0)
    speed("mp_cgcnn formation-energy training split", graphs[train], y[train], args)


def recipes(epochs: int, batches_per_epoch: int) -> dict:
    step = [int(0.8 * epochs)]
    return {
        "sgd_momentum_step (original)": dict(optimizer=torch.optim.SGD, lr=0.01, optimizer__momentum=0.9,
                                             callbacks__lr_scheduler=LRScheduler(MultiStepLR, milestones=step)),
        "sgd_momentum_cosine": dict(optimizer=torch.optim.SGD, lr=0.01, optimizer__momentum=0.9,
                                    callbacks__lr_scheduler=LRScheduler(CosineAnnealingLR, T_max=epochs)),
        "adam_step": dict(optimizer=torch.optim.Adam, lr=1e-3,
                          callbacks__lr_scheduler=LRScheduler(MultiStepLR, milestones=step)),
        "adamw_cosine (default)": dict(optimizer=torch.optim.AdamW, lr=1e-3),
        "adamw_cosine_batch256": dict(optimizer=torch.optim.AdamW, lr=2e-3, batch_size=256),
        "adamw_cosine_batch1024": dict(optimizer=torch.optim.AdamW, lr=4e-3, batch_size=1024),
        "adamw_onecycle": dict(optimizer=torch.optim.AdamW, lr=1e-3, callbacks__lr_scheduler=LRScheduler(
            OneCycleLR, max_lr=3e-3, total_steps=epochs * batches_per_epoch, step_every="batch")),
        # What else makes an epoch count, each on top of the default:
        "adamw_cosine_l1_loss": dict(criterion=torch.nn.L1Loss),
        "adamw_cosine_weight_averaging": dict(callbacks=[("averaging", WeightAveraging(start=0.75))]),
        "adamw_cosine_composition_baseline": dict(composition_baseline=True),
        "adamw_cosine_wide": dict(atom_fea_len=128, h_fea_len=256),
        "adamw_cosine_deep": dict(n_conv=5),
    }


def composition(graphs) -> np.ndarray:
    """Each crystal's element fractions, shape (n_crystals, 101)."""
    crystal = np.repeat(np.arange(len(graphs)), graphs.n_atoms)
    counts = np.zeros((len(graphs), 101))
    np.add.at(counts, (crystal, graphs.atomic_numbers), 1.0)
    return counts / graphs.n_atoms[:, None]


def optimizers(graphs, y, args):
    idx = np.arange(len(graphs))
    if args.recipe_data == "formation_energy":
        train, rest = train_test_split(idx, train_size=0.6, random_state=0)
    else:
        train, rest = train_test_split(idx, test_size=0.2, random_state=0)
    val, test = train_test_split(rest, test_size=0.5, random_state=0)
    batches = -(-len(train) // 64)
    chosen = recipes(args.epochs, batches)
    for name in args.recipes or chosen:
        params = dict(chosen[name])
        # A linear fit on the element fractions takes the composition's share of the target; the network learns
        # what is left.
        linear = Ridge(alpha=1e-3).fit(composition(graphs[train]), y[train]) if params.pop(
            "composition_baseline", False) else None
        offset = linear.predict(composition(graphs)) if linear is not None else np.zeros(len(y))
        for seed in args.seeds:
            reg = CGCNNRegressor(max_epochs=args.epochs, random_state=seed, device=args.device, **params)
            start = time.perf_counter()
            reg.fit(graphs[train], y[train] - offset[train])
            emit({"benchmark": "optimizer_recipes", "data": args.recipe_data, "recipe": name,
                  "epochs": args.epochs, "n_train": len(train), "model_seed": seed,
                  "val_mae": round(float(mean_absolute_error(y[val], reg.predict(graphs[val]) + offset[val])), 4),
                  "test_mae": round(float(mean_absolute_error(y[test], reg.predict(graphs[test]) + offset[test])), 4),
                  "fit_s": round(time.perf_counter() - start, 1), "device": args.device,
                  "hardware": hardware(args.device)}, args.results)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["speed", "full_epoch", "optimizers", "all"], default="all")
    parser.add_argument("--mp", type=Path, default=MP_CSV)
    parser.add_argument("--perov", type=Path, default=PEROV_CSV)
    parser.add_argument("--n-mp", type=int, default=5000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--speed-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60, help="epoch budget of each optimizer recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="model seeds of each recipe")
    parser.add_argument("--recipes", nargs="+", default=None, help="names of the recipes to run (default all)")
    parser.add_argument("--recipe-data", choices=["perovskites", "formation_energy"], default="perovskites",
                        help="data set of the optimizer comparison")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64, help="crystals per batch of the timed fits")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of the timed fits (default: the "
                                                               "estimator's)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network of the timed fits (dynamic shapes; the first epoch, which "
                             "compiles, is not timed)")
    parser.add_argument("--batches", choices=["auto", "host", "device"], default="auto",
                        help="where batches are built: the estimator's default (on the device for CUDA), the host, or "
                             "gathered on --device from the data set copied there once")
    parser.add_argument("--predict-batch-size", type=int, default=None,
                        help="crystals per batch when timing prediction (default: --batch-size)")
    parser.add_argument("--nbr-rule", choices=NBR_RULES, default="shared", help="neighbour rule of the graphs")
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for featurizing (not timed)")
    parser.add_argument("--flush-denormal", action="store_true",
                        help="flush subnormal floats to zero in this process (torch.set_flush_denormal), to measure "
                             "what subnormal numbers cost each implementation")
    parser.add_argument("--results", type=Path, default=RESULTS / "train.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    if args.flush_denormal and not torch.set_flush_denormal(True):
        sys.exit("this CPU cannot flush subnormal numbers to zero")

    if args.part == "full_epoch":
        full_epoch(args)
        return
    if args.part == "optimizers" and args.recipe_data == "formation_energy":
        texts, y, _ = load_csv(require(args.mp), target="formation_energy_per_atom", parse=False)
        optimizers(featurize(texts, args), y, args)
        return
    texts, perov_y, _ = load_csv(require(args.perov), target="heat_ref", parse=False)
    perov = featurize(texts, args)
    if args.part in ("speed", "all"):
        texts, mp_y, _ = load_csv(require(args.mp), target="formation_energy_per_atom", parse=False,
                                  nrows=args.n_mp)
        speed(f"mp_cgcnn first {args.n_mp}", featurize(texts, args), mp_y, args)
        speed("perov_5", perov, perov_y, args)
    if args.part in ("optimizers", "all"):
        optimizers(perov, perov_y, args)


if __name__ == "__main__":
    main()
