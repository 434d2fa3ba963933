"""Screening at scale from disk: featurize and save, then predict, at 10^4, 10^5 and 10^6 crystals, with peak memory.

Real crystals (the first --pool rows of mp_cgcnn_36737, as CIF text) are replicated under new ids up to N. Each
stage of each size runs in a fresh process, so that its peak memory is its own:

* featurize: CIF text -> crystal graphs, one chunk at a time, written with ``save_graphs`` as they come. Above
  --featurize-max crystals, the folder is instead the --featurize-max folder written again as many times as needed
  (reported as ``replicated``: the save is timed, the featurizing rate is the one measured below it).
* predict: ``iter_graphs`` chunks -> ``predict`` -> rows appended to a CSV.
* cif_folder (sizes up to 10,000): the crystals written as CIF files into a folder, then ``predict_to_csv`` on it,
  once with pymatgen's CIF parser and once with the gemmi path (``cif_reader``), in one process (target: 3x).

Memory is reported as the peak resident size of the main process, and the largest resident size of the
featurizing worker processes sampled after every chunk. The model (default architecture) is trained for one epoch
on the pool first; its weights do not change the timings.

    python benchmarks/scale.py
    python benchmarks/scale.py --sizes 10000 100000 --work /tmp/scale
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from common import MP_CSV, RESULTS, emit, hardware, peak_rss_mib, require

STAGES = ("featurize", "predict")
#: Crystals written as CIF files for the folder-to-predictions stage (run for the sizes up to it).
CIF_FOLDER_MAX = 10_000


def worker_rss_mib() -> float:
    """Largest resident size among this process's children (the featurizing workers), in MiB."""
    me, largest = str(os.getpid()), 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == me and "VmRSS" in fields:
            largest = max(largest, int(fields["VmRSS"].split()[0]) / 1024)
    return largest


def graphs_folder(work: Path, n: int) -> Path:
    return work / f"{n}.graphs"


def featurize(args) -> dict:
    from skcgcnn import CrystalGraphTransformer
    from skcgcnn.datasets import load_csv
    from skcgcnn.graph_files import iter_graphs, save_graphs

    target = graphs_folder(args.work, args.n)
    workers = [0.0]
    if args.n <= args.featurize_max:
        texts, _, _ = load_csv(require(args.data), target=None, parse=False, nrows=args.pool)
        transformer = CrystalGraphTransformer(n_jobs=args.n_jobs)

        def chunks():
            for begin in range(0, args.n, args.chunk_size):
                rows = np.arange(begin, min(begin + args.chunk_size, args.n)) % len(texts)
                yield transformer.transform([texts[i] for i in rows])
                workers.append(worker_rss_mib())

        mode = "featurized"
    else:
        source = graphs_folder(args.work, args.featurize_max)
        if not source.is_dir():
            sys.exit(f"{source} is missing: run the size {args.featurize_max} first")

        def chunks():
            written = 0
            while written < args.n:
                for chunk in iter_graphs(source, args.chunk_size):
                    chunk = chunk[: args.n - written]
                    written += len(chunk)
                    yield chunk
                    if written == args.n:
                        return

        mode = "replicated"
    start = time.perf_counter()
    save_graphs(chunks(), target, force=True)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in target.iterdir())
    return {"stage": "featurize", "mode": mode, "seconds": round(seconds, 1),
            "crystals_per_s": round(args.n / seconds, 1), "disk_mib": round(size / 2**20, 1),
            "peak_rss_mib": round(peak_rss_mib(), 1), "worker_peak_rss_mib": round(max(workers), 1),
            "n_jobs": args.n_jobs}


def predict(args) -> dict:
    from skcgcnn.graph_files import iter_graphs
    from skcgcnn.persistence import load_model

    model = load_model(args.work / "model.skcgcnn")
    before = peak_rss_mib()
    output = args.work / f"{args.n}.predictions.csv"
    start = time.perf_counter()
    done = 0
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prediction"])
        for chunk in iter_graphs(graphs_folder(args.work, args.n), args.chunk_size):
            values = model.predict(chunk)
            writer.writerows(zip((f"c{i}" for i in range(done, done + len(chunk))), values.tolist()))
            done += len(chunk)
    seconds = time.perf_counter() - start
    if done != args.n:
        sys.exit(f"predicted {done} crystals, expected {args.n}")
    output.unlink()
    return {"stage": "predict", "seconds": round(seconds, 1), "crystals_per_s": round(args.n / seconds, 1),
            "rss_before_mib": round(before, 1), "peak_rss_mib": round(peak_rss_mib(), 1)}


def cif_to_prediction(args) -> dict:
    """``predict_to_csv`` on a folder of CIF files, read by pymatgen and by the gemmi path, in one run."""
    from sklearn.pipeline import Pipeline

    from skcgcnn import CrystalGraphTransformer
    from skcgcnn.datasets import load_csv
    from skcgcnn.persistence import load_model
    from skcgcnn.streaming import predict_to_csv

    texts, _, _ = load_csv(require(args.data), target=None, parse=False, nrows=args.pool)
    folder = args.work / f"{args.n}.cifs"
    folder.mkdir(exist_ok=True)
    for i in range(args.n):
        (folder / f"c{i}.cif").write_text(texts[i % len(texts)])
    model = load_model(args.work / "model.skcgcnn")
    rates = {}
    for reader in ("pymatgen", "auto"):
        featurizer = CrystalGraphTransformer.from_settings(model.graph_settings_, n_jobs=args.n_jobs,
                                                           cif_reader=reader)
        start = time.perf_counter()
        predict_to_csv(Pipeline([("graph", featurizer), ("cgcnn", model)]), [folder],
                       args.work / "cifs.predictions.csv", chunk_size=args.chunk_size, force=True,
                       report=lambda *a: None)
        rates[reader] = args.n / (time.perf_counter() - start)
    shutil.rmtree(folder)
    return {"stage": "cif_folder_to_predictions", "crystals_per_s_pymatgen": round(rates["pymatgen"], 1),
            "crystals_per_s": round(rates["auto"], 1), "speedup": round(rates["auto"] / rates["pymatgen"], 2),
            "target_speedup": 3, "n_jobs": args.n_jobs, "peak_rss_mib": round(peak_rss_mib(), 1)}


def train_model(args) -> None:
    from skcgcnn import CGCNNRegressor
    from skcgcnn.datasets import load_csv
    from skcgcnn.persistence import save_model

    texts, y, _ = load_csv(require(args.data), target="formation_energy_per_atom", parse=False, nrows=args.pool)
    model = CGCNNRegressor(max_epochs=1, random_state=0).fit(texts, y)
    save_model(model, args.work / "model.skcgcnn", force=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--data", type=Path, default=MP_CSV)
    parser.add_argument("--pool", type=int, default=10_000, help="distinct real crystals replicated up to N")
    parser.add_argument("--featurize-max", type=int, default=100_000,
                        help="largest N featurized; above it the graphs of this size are replicated")
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/skcgcnn-scale"),
                        help="folder for the model, the graphs and the predictions (removed at the end)")
    parser.add_argument("--results", type=Path, default=RESULTS / "scale.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    parser.add_argument("--stage", choices=[*STAGES, "cif_folder"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.stage:
        record = {"featurize": featurize, "predict": predict, "cif_folder": cif_to_prediction}[args.stage](args)
        emit({"benchmark": "scale", "n_crystals": args.n, **record, "chunk_size": args.chunk_size,
              "hardware": hardware()}, args.results)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    train_model(args)
    for n in sorted(args.sizes):
        for stage in [*STAGES, *(["cif_folder"] if n <= CIF_FOLDER_MAX else [])]:
            command = [sys.executable, __file__, "--stage", stage, "--n", str(n), "--data", str(args.data),
                       "--pool", str(args.pool), "--featurize-max", str(args.featurize_max),
                       "--chunk-size", str(args.chunk_size), "--n-jobs", str(args.n_jobs), "--work", str(args.work),
                       "--results", str(args.results)]
            subprocess.run(command, check=True)
        if n != args.featurize_max:
            shutil.rmtree(graphs_folder(args.work, n))
    shutil.rmtree(args.work)


if __name__ == "__main__":
    main()
