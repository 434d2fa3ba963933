"""Helpers shared by the benchmark scripts: data paths, hardware description, JSON-lines output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import sys
from pathlib import Path

import torch

# The data folder beside the repository, or the one SKCGCNN_DATA names (on a machine where that is elsewhere).
SHARED_DATA = Path(os.environ.get("SKCGCNN_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
MP_CSV = SHARED_DATA / "mp_cgcnn_36737" / "mp_cgcnn_36737.csv.gz"
ELASTIC_CSV = SHARED_DATA / "mp_elasticity_3191" / "mp_elasticity_3191.csv.gz"
PEROV_CSV = SHARED_DATA / "perov_5" / "perov_5_val_test.csv.gz"
# Each script appends its JSON lines to RESULTS / "<script>.jsonl", which report.py reads.
RESULTS = Path(__file__).parent / "results"


def hardware(device: str = "cpu") -> str:
    """A short description of the machine the numbers were taken on."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    return f"{model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's VmHWM, which starts afresh in a new program; ``ru_maxrss`` keeps the peak of the process that
    started it (it survives fork and exec), so a child of a large parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def require(path: Path) -> Path:
    """Exit with a clear message when a data file is absent."""
    if not path.is_file():
        sys.exit(f"data file {path} not found; pass its location on the command line (see --help)")
    return path


def emit(record: dict, results: Path | None = None) -> None:
    """Print one JSON line (and append it to ``results`` when given)."""
    record = {"date": datetime.date.today().isoformat(), **record}
    line = json.dumps(record)
    print(line, flush=True)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        with open(results, "a") as handle:
            handle.write(line + "\n")
