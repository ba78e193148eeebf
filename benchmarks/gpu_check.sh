#!/usr/bin/env bash
# The CUDA path, end to end, and GPU timings of the cnn and the gan (issue 6).
#
#   OUT=DIR ZOO_DATA_DIR=DIR bash benchmarks/gpu_check.sh [quick]
#
# Meant for a one-GPU machine that already has torch (the device tool's machines):
# installs zoo without dependencies, then
#   1. zoo bench cnn and gan on cuda: fp32/bf16 x batch 64/512, and bf16 + compile;
#   2. trains the cnn for 2 full epochs (bf16, compile) and the gan for 1 (bf16),
#      resumes the cnn for a third epoch and evaluates it;
#   3. torchrun with one process (nccl) for a few dense steps.
# Every step runs even when an earlier one fails. Logs, JSON and run folders (less their
# checkpoints) end up in one archive, $OUT/gpu_check.tar.gz.
# `quick` runs the same commands on the CPU with tiny budgets (a dry run of this script).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to a folder for the results}
WORK=${WORK:-/tmp/zoo-gpu-check}
RUNS=$WORK/runs
rm -rf "$WORK" && mkdir -p "$OUT" "$RUNS"

if [ "${1:-}" = quick ]; then
    PY=${PY:-.venv/bin/python}; DEV=cpu; STEPS="--steps 2 --windows 2 --warmup 1"
    SIZES=64; TRAIN="--max-steps 20 --train-size 2000 --test-size 500"; EPOCHS=(1 1 2)
    SAMPLES="--samples 500"
else
    PY=${PY:-python3}; DEV=cuda; STEPS="--steps 50 --windows 5 --warmup 10"
    SIZES=64,512; TRAIN=""; EPOCHS=(2 1 3); SAMPLES=""
    source benchmarks/gpu_setup.sh && install_zoo "$PY" "$WORK"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

DEADLINE=${DEADLINE:-480}  # seconds for the whole script: the archive is written in time
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $WORK/NAME.log
    local name=$1 limit=$2; shift 2
    local started=$SECONDS left=$((DEADLINE - SECONDS - 15))
    if [ "$left" -lt 10 ]; then echo "== $name: skipped (deadline)"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    timeout "$limit" "$@" >"$WORK/$name.log" 2>&1
    echo "== $name: exit $? in $((SECONDS - started)) s"
    tail -n 12 "$WORK/$name.log"
}

for name in cnn gan; do
    step "bench_$name" 150 "$PY" -m zoo bench "$name" --device "$DEV" --batch-size "$SIZES" \
        --precision fp32,bf16 $STEPS -o "$WORK/bench_$name.json"
    step "bench_${name}_compile" 200 "$PY" -m zoo bench "$name" --device "$DEV" \
        --batch-size "$SIZES" --precision bf16 --compile yes $STEPS \
        -o "$WORK/bench_${name}_compile.json"
done

step run_cnn 200 "$PY" -m zoo run cnn --device "$DEV" --precision bf16 --compile \
    --epochs "${EPOCHS[0]}" $TRAIN --out "$RUNS" --no-progress
step run_gan 200 "$PY" -m zoo run gan --device "$DEV" --precision bf16 \
    --epochs "${EPOCHS[1]}" $TRAIN --out "$RUNS" --no-progress
step resume_cnn 120 "$PY" -m zoo run cnn --device "$DEV" --precision bf16 --compile \
    --epochs "${EPOCHS[2]}" $TRAIN --out "$RUNS" --no-progress --resume auto
step eval_cnn 60 "$PY" -m zoo eval "$(ls -d "$RUNS"/*cnn* | head -n 1)" --device "$DEV"
step eval_gan 120 "$PY" -m zoo eval "$(ls -d "$RUNS"/*gan* | head -n 1)" --device "$DEV" $SAMPLES
step torchrun 120 "$PY" -m torch.distributed.run --nproc-per-node 1 -m zoo run dense \
    --device "$DEV" --max-steps 100 --out "$RUNS" --no-progress

tar -czf "$OUT/gpu_check.tar.gz" --exclude='*.safetensors' -C "$WORK" . && ls -la "$OUT"
