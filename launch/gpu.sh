#!/usr/bin/env bash
# One host, all its GPUs: one process drives every local GPU (the batch is split over them).
#
#   pip install -c constraints.txt -e '.[train,gpu]'   # once: the drivers and jax's CUDA 12 plugin
#   launch/gpu.sh --config configs/celeba64.py --workdir runs/celeba64 [--config.x.y=v ...]
#
# CUDA_VISIBLE_DEVICES picks the GPUs. Multi-node GPU clusters: launch/slurm.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! "$PYTHON" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  echo "gpu.sh: jax in $PYTHON sees no GPU; install the CUDA build with pip install -c constraints.txt -e '.[train,gpu]'" >&2
  exit 2
fi
# Let XLA overlap the gradient all-reduce with the backward pass.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
absolute_args "$@"  # relative paths are the caller's, not the checkout's
set -- ${ARGS[@]+"${ARGS[@]}"}
compile_cache_args "$@"
run "$PYTHON" -m soft_diffusion.main "${CACHE_ARGS[@]}" "$@"
