#!/usr/bin/env bash
# GPU/TPU numbers for celeba64's NCSN++ in one prepared run of at most about 8 minutes: first
# the golden train step of the tiny config against the CPU's values (tools/golden_step.py:
# float32 within 1e-4, bf16 within 5e-2; exit status 3 when only that fails), then the
# largest bf16 batch of 256/128/64 whose train step compiles and runs (compile time apart from
# step time), its images/s, FLOPs (XLA's cost analysis, all devices) and MFU against the chip's
# datasheet bf16 peak and the measured matmul rate; then sampling images/s at 100 NFE and
# Inception images/s. Everything it prints also goes to OUT_DIR.
#
#   tools/accelerator.sh OUT_DIR [--config celeba64] [--batches "256 128 64"] [--steps 20]
#
# Made for a machine with no network at all (no package registry either), no .venv, and its own
# Python and jax: it runs the checkout in place (PYTHONPATH), with the interpreter $PYTHON, else
# .venv/bin/python, else python3. Packages that machine lacks (grain, array_record, portpicker
# on a CUDA image with jax and flax) travel as wheels in .whl/ (tools/accelerator_wheels.sh
# downloads them here) and are installed into a scratch folder first, without network, when
# the interpreter lacks them. The
# Inception step uses the FID weights when they are cached and random weights of the same shapes
# otherwise (the same cost; nothing is downloaded). It refuses a CPU-only jax in one line
# (ACCELERATOR_ALLOW_CPU=1 runs it anyway, as the test does with a tiny config).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="" config=celeba64 batches="256 128 64" steps=20 nfe=100 inception_batch=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --batches) batches="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --nfe) nfe="$2"; shift 2 ;;
    --inception_batch) inception_batch="$2"; shift 2 ;;
    -*) echo "accelerator.sh: unknown option $1 (allowed: --config --batches --steps --nfe --inception_batch)" >&2; exit 2 ;;
    *) [[ -z "$out" ]] || { echo "accelerator.sh: one OUT_DIR, got '$out' and '$1'" >&2; exit 2; }; out="$1"; shift ;;
  esac
done
[[ -n "$out" ]] || { echo "accelerator.sh: give the output folder: tools/accelerator.sh OUT_DIR" >&2; exit 2; }
mkdir -p "$out" || exit 2
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c "import grain, array_record, portpicker" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  site="$(mktemp -d)"
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl \
    || { echo "accelerator.sh: the wheels in .whl/ did not install into $site" >&2; exit 2; }
  export PYTHONPATH="$PYTHONPATH:$site"
fi
log() { echo "== $* ($(date +%H:%M:%S))" | tee -a "$out/accelerator.log" >&2; }

log "devices"
"$PYTHON" - <<'EOF' | tee "$out/devices.txt"
import os, sys
import jax
backend = jax.default_backend()
print(f"jax {jax.__version__}, backend {backend}, {jax.device_count()} x {jax.devices()[0].device_kind}")
if backend == "cpu" and os.environ.get("ACCELERATOR_ALLOW_CPU") != "1":
  sys.exit(f"accelerator.sh: jax in {sys.executable} found no GPU or TPU (backend cpu); ACCELERATOR_ALLOW_CPU=1 runs it anyway")
import soft_diffusion  # everything the benchmarks import is here (or in .whl/)
EOF
[[ "${PIPESTATUS[0]}" == 0 ]] || exit 2

log "golden step: tiny config, float32 and bf16, against the CPU's values"
timeout 150 "$PYTHON" tools/golden_step.py --json "$out/golden_step.json" 2>&1 | tee "$out/golden_step.txt"
golden="${PIPESTATUS[0]}"  # a mismatch is reported at the end; the timings still run

batch=""
for b in $batches; do
  log "train step, $config, bf16, batch $b"
  if timeout 200 "$PYTHON" benchmarks/train_step.py --configs "$config" --batch "$b" --dtype bfloat16 --steps "$steps" \
    >"$out/train_step_b$b.txt" 2>&1; then
    batch="$b"
    cat "$out/train_step_b$b.txt"
    break
  fi
  tail -n 3 "$out/train_step_b$b.txt" >&2
done
[[ -n "$batch" ]] || { echo "accelerator.sh: no batch of $batches ran; see $out" >&2; exit 1; }
log "sampling at $nfe NFE and Inception, batch $batch"
timeout 200 "$PYTHON" benchmarks/sampling.py --config "$config" --batch "$batch" --num_steps "$nfe" --dtype bfloat16 \
  --inception_weights auto --inception_batch "${inception_batch:-$batch}" --json "$out/sampling.json" 2>&1 | tee "$out/sampling.txt"
status="${PIPESTATUS[0]}"
if [[ "$golden" != 0 ]]; then
  echo "accelerator.sh: the golden step differs from the CPU's beyond its bound (see $out/golden_step.txt)" >&2
  [[ "$status" != 0 ]] || status=3
fi
log "done (status $status)"
exit "$status"
