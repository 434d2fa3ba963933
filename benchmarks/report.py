"""Render the JSON-lines results of the benchmarks as the Markdown tables of docs/benchmarks.md.

    python benchmarks/report.py > /tmp/tables.md
"""

from __future__ import annotations

import json
from common import RESULTS


def records(name: str) -> list[dict]:
    path = RESULTS / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def table1() -> str:
    # The results file also holds shorter, earlier runs of a task; the table shows the longest one of each rule.
    longest: dict[tuple[str, str], dict] = {}
    for r in records("table1"):
        key = r["task"], r.get("nbr_rule", "first")
        if key not in longest or r["epochs"] >= longest[key]["epochs"]:
            longest[key] = r
    rows = []
    for (task, rule), r in longest.items():
        metric = "ROC-AUC" if r["metric"] == "roc_auc" else f"MAE {r['unit']}".strip()
        rows.append([task, rule, metric, r["test"], r["published"], f"{r['n_train']:,} ({r['published_n_train']:,})",
                     f"{r['epochs']} (best {r['best_epoch']})", f"{r['train_s'] / 60:.1f} min", r["hardware"],
                     r["date"], f"`{r['command']}`"])
    header = ["task", "neighbour rule", "metric", "skcgcnn (test)", "paper", "training crystals (paper)", "epochs",
              "training time", "hardware", "date", "command"]
    return table(header, rows)


def speed() -> str:
    # A re-run replaces the rows of the same data, set-up and machine; dicts keep first-seen order.
    latest = {}
    for r in records("train"):
        if r["benchmark"] == "train_speed":
            latest[r["data"], r["implementation"], r.get("precision"), r.get("step"), r.get("batches"),
                   r.get("flush_denormal", False), r.get("batch_size", 64), r.get("lr"), r.get("compile", False),
                   r["hardware"]] = r
    rows = []
    for r in latest.values():
        setup = ", subnormals flushed" if r.get("flush_denormal") else ""
        setup += f", batch {r['batch_size']}" if r.get("batch_size", 64) != 64 else ""
        setup += f", lr {r['lr']}" if r.get("lr") else ""
        setup += ", compiled" if r.get("compile") else ""
        where = [r["hardware"], r["date"]]
        if r.get("step") == "predict":
            rows.append([r["data"], "predict" + setup, "", r["crystals_per_s"], "", "",
                         f"peak RSS {r['peak_rss_mib']} MiB", *where])
        elif r["implementation"] == "baseline":
            rows.append([r["data"], "baseline" + setup, r["epoch_s"], r["crystals_per_s"], "", "",
                         f"skcgcnn is {r['speedup_of_skcgcnn']}x faster"
                         + (f" ({r['speedup_of_skcgcnn_bfloat16']}x in bfloat16)"
                            if "speedup_of_skcgcnn_bfloat16" in r else ""), *where])
        else:
            name = f"skcgcnn ({r.get('precision', 'float32')}{setup})"
            if r.get("batches") == "gathered on the device":
                name += ", batches gathered on the device"
            note = f"{r['n_atoms']:,} atoms, {r['n_edges']:,} edges"
            if "peak_gpu_memory_mib" in r:
                note += f", peak GPU memory {r['peak_gpu_memory_mib']} MiB"
            rows.append([r["data"], name, r["epoch_s"], r["crystals_per_s"], r["train_gflop_per_epoch"],
                         r["achieved_gflop_per_s"], note, *where])
    header = ["data", "implementation", "epoch (s)", "crystals/s", "GFLOP/epoch", "GFLOP/s", "note", "hardware",
              "date"]
    return table(header, rows)


def recipes() -> str:
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in records("train"):
        if r["benchmark"] == "optimizer_recipes":
            runs.setdefault((r["data"], r["recipe"]), []).append(r)
    rows = []
    for (data, name), rs in runs.items():
        maes = [r["test_mae"] for r in rs]
        rows.append([data, name, rs[0]["epochs"], len(maes), f"{sum(maes) / len(maes):.4f}",
                     " / ".join(f"{m:.4f}" for m in maes), f"{sum(r['fit_s'] for r in rs) / len(rs) / 60:.1f}"])
    return table(["data", "recipe", "epochs", "seeds", "mean test MAE", "per seed", "fit (min)"], rows)


def featurize() -> str:
    rows = [[r.get("nbr_rule", "first"), r["step"], r.get("n_jobs", 1), r["n_structures"], r["structures_per_s"],
             r.get("bytes_per_atom", ""), r.get("speedup_n_jobs_1", "")] for r in records("featurize")]
    header = ["neighbour rule", "step", "n_jobs", "structures", "structures/s", "bytes/atom",
              "speed-up over reference"]
    return table(header, rows)


def neighbour_rules() -> str:
    rows = [[r["data"], f"{r['n_structures']:,}", f"{r['structures_that_differ']:.1%}",
             f"{r['atoms_with_shared_shell']:.1%}", f"+{r['extra_edges']:.1%}", r["bytes_per_atom_first"],
             r["bytes_per_atom_shared"], r["date"]] for r in records("neighbour_rules")]
    header = ["data", "structures", "graph differs", "atoms with a shared shell", "edges (shared vs first)",
              "bytes/atom (first)", "bytes/atom (shared)", "date"]
    return table(header, rows)


def duplicates() -> str:
    rows = [[r["data"], f"{r['n_crystals']:,}", r["groups"], r["entries"], f"{r['share_of_data']:.1%}",
             r["featurize_s"], r["match_s"], r["n_jobs"], r["date"]] for r in records("duplicates")]
    header = ["data", "crystals", "present more than once", "entries", "share", "featurize (s)", "match (s)",
              "n_jobs", "date"]
    return table(header, rows)


def uncertainty() -> str:
    rows = [[r["task"], r["members"], r["epochs"], r["member_mae_mean"], r["ensemble_mae"], r["spearman_error_std"],
             r["miscalibration_area"],
             f"{r['conformal_90_coverage']:.1%} / {r['conformal_90_width']}",
             f"{r['conformal_90_scaled_coverage']:.1%} / {r['conformal_90_scaled_width']}",
             f"{r['conformal_95_coverage']:.1%} / {r['conformal_95_width']}",
             f"{r['conformal_95_scaled_coverage']:.1%} / {r['conformal_95_scaled_width']}", r["date"]]
            for r in records("uncertainty")]
    header = ["task", "members", "epochs", "member MAE (mean)", "ensemble MAE", "Spearman(abs error, std)",
              "miscalibration area", "90 % coverage / width", "90 % scaled", "95 % coverage / width", "95 % scaled",
              "date"]
    return table(header, rows)


def scale() -> str:
    rows = []
    for r in records("scale"):
        if r["stage"] == "featurize":
            what = "featurize + save" if r["mode"] == "featurized" else "save (graphs replicated)"
            memory = f"{r['peak_rss_mib']:.0f} (workers {r['worker_peak_rss_mib']:.0f})"
        else:
            what, memory = "predict from disk", f"{r['peak_rss_mib']:.0f} (after loading {r['rss_before_mib']:.0f})"
        rows.append([f"{r['n_crystals']:,}", what, r["seconds"], f"{r['crystals_per_s']:,.0f}",
                     r.get("disk_mib", ""), memory, r["date"]])
    header = ["crystals", "step", "seconds", "crystals/s", "graphs on disk (MiB)", "peak RSS (MiB)", "date"]
    return table(header, rows)


if __name__ == "__main__":
    for title, body in (("Table I", table1()), ("Training speed", speed()), ("Optimizer recipes", recipes()),
                        ("Featurization", featurize()), ("Neighbour rules", neighbour_rules()),
                        ("Duplicates", duplicates()), ("Uncertainty", uncertainty()), ("Scale", scale())):
        print(f"## {title}\n\n{body}\n")
