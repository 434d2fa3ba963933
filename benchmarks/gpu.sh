#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md, in parts that each take under 10 minutes on an H100:
#
#   bash benchmarks/gpu.sh PART [RESULTS_FOLDER]
#
# PART is one of
#   tests     the tests that need CUDA (fit, predict, bfloat16, data set kept on the GPU, a GPU-fitted model
#             loaded in a process without CUDA)
#   speed     epoch time, crystals/s, GFLOP/s and peak GPU memory on the formation-energy training split:
#             batches of 64 (the default) gathered on the GPU and built on the host, 256 and 1024 crystals, and
#             1024 compiled; prediction throughput in batches of 4096
#   accuracy  test MAE after 20 epochs on the same split at batch sizes 64, 256 and 1024, to pick the batch
#             size and learning rate that keep the default's accuracy per epoch
#   table1    the formation-energy row of Table I with an 8-minute training budget
#   uncertainty
#             5-member ensembles and conformal intervals, 20 epochs per member, formation energy and band gap
#
# The JSON lines go to RESULTS_FOLDER (default benchmarks/results). The data sets are read from ../shared/data
# beside the repository, or from the folder SKCGCNN_DATA names. Featurizing uses every core (not timed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
part="${1:?usage: bash benchmarks/gpu.sh tests|speed|accuracy|table1|uncertainty [RESULTS_FOLDER]}"
results="$(mkdir -p "${2:-$here/results}" && cd "${2:-$here/results}" && pwd)"
jobs="$(nproc)"
export PYTHONUNBUFFERED=1
cd "$here"

epoch() {
    python3 train.py --part full_epoch --device cuda --skip-baseline --n-jobs "$jobs" \
        --results "$results/train.jsonl" "$@"
}

case "$part" in
    tests)
        cd .. && python3 -m pytest -q -rs -k cuda tests/test_batching.py tests/test_estimators.py 2>&1 |
            tee "$results/cuda_tests.txt"
        ;;
    speed)
        epoch --predict-batch-size 4096
        epoch --batches host
        epoch --batch-size 256 --lr 2e-3
        epoch --batch-size 1024 --lr 4e-3
        epoch --batch-size 1024 --lr 4e-3 --compile
        ;;
    accuracy)
        python3 train.py --part optimizers --recipe-data formation_energy --device cuda --epochs 20 \
            --n-jobs "$jobs" --results "$results/train.jsonl" \
            --recipes "adamw_cosine (default)" adamw_cosine_batch256 adamw_cosine_batch1024
        ;;
    table1)
        python3 table1.py --task formation_energy --device cuda --epochs 1000 --time-budget 8 \
            --n-jobs "$jobs" --results "$results/table1.jsonl"
        ;;
    uncertainty)
        for task in formation_energy band_gap; do
            python3 uncertainty.py --task "$task" --epochs 20 --device cuda --results "$results/uncertainty.jsonl"
        done
        ;;
    *)
        echo "unknown part '$part': tests, speed, accuracy, table1 or uncertainty" >&2
        exit 2
        ;;
esac
