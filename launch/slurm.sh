#!/usr/bin/env bash
# Multi-node GPUs under SLURM: one task per GPU. jax.distributed.initialize() reads the job's
# environment (SLURM_STEP_NODELIST, SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID: the coordinator is
# the first node, and task i uses the GPU of its local rank).
#
#   sbatch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 launch/slurm.sh \
#     --config configs/celeba64.py --workdir /shared/runs/celeba64
#
# The workdir must be on a file system every node sees. Resubmitting the same command resumes
# from the last checkpoint (also after the scheduler pre-empts the job with SIGTERM).
#SBATCH --job-name=soft_diffusion
#SBATCH --signal=TERM@120
#SBATCH --open-mode=append
if [[ -n "${SLURM_SUBMIT_DIR:-}" && -f "$SLURM_SUBMIT_DIR/launch/common.sh" ]]; then
  source "$SLURM_SUBMIT_DIR/launch/common.sh"  # sbatch runs a copy of this file from a spool dir
else
  source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  echo "slurm.sh: not inside a SLURM job; submit it with sbatch (see the header), or use launch/gpu.sh" >&2
  exit 2
fi
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
compile_cache_args "$@"
run srun --kill-on-bad-exit=1 "$PYTHON" -m soft_diffusion.main --distributed "${CACHE_ARGS[@]}" "$@"
