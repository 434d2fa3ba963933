"""Smoke test of the Table I benchmark script on a small subset of the real data, when it is present."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEROV = ROOT.parent / "shared" / "data" / "perov_5" / "perov_5_val_test.csv.gz"


@pytest.mark.skipif(not PEROV.is_file(), reason="../shared/data/perov_5 is not available")
def test_table1_runs_one_epoch_on_200_perovskites(tmp_path):
    results = tmp_path / "table1.jsonl"
    subprocess.run(
        [sys.executable, "table1.py", "--task", "perovskites", "--epochs", "1", "--limit", "200",
         "--results", str(results)],
        cwd=ROOT / "benchmarks", check=True, timeout=600, capture_output=True,
    )
    record = json.loads(results.read_text().splitlines()[-1])
    assert record["task"] == "perovskites" and record["epochs"] == 1
    assert (record["n_train"], record["n_val"], record["n_test"]) == (120, 40, 40)
    assert 0 < record["test"] < 5
