#!/usr/bin/env bash
# GPU/TPU numbers for celeba64's NCSN++ in one prepared run (about 8 minutes; run it when a
# device is lent): the largest bf16 batch of 256/128/64 whose train step compiles and runs,
# its images/s, FLOPs (XLA's cost analysis) and MFU against the chip's datasheet bf16 peak and
# the measured matmul rate; then sampling images/s at 100 NFE and Inception images/s.
#
#   benchmarks/accelerator.sh [OUT_DIR]     # prints the numbers; the logs go to OUT_DIR (default: runs/accelerator)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
out="${1:-runs/accelerator}"
mkdir -p "$out"
"$PYTHON" -c "import jax; print(jax.devices())" | tee "$out/devices.txt"
batch=""
for b in 256 128 64; do
  echo "== train step, celeba64 NCSN++, bf16, batch $b" >&2
  if timeout 200 "$PYTHON" benchmarks/train_step.py --configs celeba64 --batch "$b" --dtype bfloat16 --steps 20 \
    >"$out/train_step_b$b.txt" 2>&1; then
    batch="$b"
    cat "$out/train_step_b$b.txt"
    break
  fi
  tail -n 3 "$out/train_step_b$b.txt" >&2
done
[[ -n "$batch" ]] || { echo "accelerator.sh: no batch of 256/128/64 ran; see $out" >&2; exit 1; }
echo "== sampling at 100 NFE and Inception, batch $batch" >&2
timeout 200 "$PYTHON" benchmarks/sampling.py --config celeba64 --batch "$batch" --num_steps 100 --dtype bfloat16 \
  2>&1 | tee "$out/sampling.txt"
