#!/usr/bin/env bash
# Multi-node GPUs under SLURM: one process per node, driving all of the node's GPUs (the batch is
# split over them, as with launch/gpu.sh), joined by jax.distributed.
#
#   sbatch --nodes=2 --gpus-per-node=8 /path/to/soft_diffusion/launch/slurm.sh \
#     --config configs/celeba64.py --workdir /shared/runs/celeba64
#
# Submit from any directory: the job finds the checkout this file belongs to (sbatch runs a copy
# of it from a spool folder; the job's Command, from scontrol, names the original) and runs there
# (set SOFT_DIFFUSION_REPO to name it yourself). The defaults below (one task per node, 16 CPUs
# per task for the input pipeline) can be overridden on the sbatch command line.
#
# How the processes find each other: `--distributed` makes jax.distributed.initialize() read the
# job's environment (SLURM_STEP_NODELIST: the coordinator is the first node; SLURM_NTASKS: the
# number of processes; SLURM_PROCID: this one). On its own it would also give each process only
# the GPU of its local rank (SLURM_LOCALID, made for one task per GPU), so this script passes
# --local_device_ids with all the node's GPUs (SLURM_GPUS_ON_NODE, else CUDA_VISIBLE_DEVICES).
#
# The workdir must be on a file system every node sees (or a gs:// bucket). Resubmitting the same
# command resumes from the last checkpoint; SLURM's pre-emption SIGTERM (--signal below) makes
# every process save the same step and exit 0.
#SBATCH --job-name=soft_diffusion
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --signal=TERM@120
#SBATCH --open-mode=append
set -euo pipefail

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  echo "slurm.sh: not inside a SLURM job; submit it with sbatch (see the header), or use launch/gpu.sh" >&2
  exit 2
fi

# The checkout: $SOFT_DIFFUSION_REPO, else where this file lies (when run in place), else the
# job's original script (sbatch copied it to a spool folder), else the submission directory.
find_repo() {
  local candidates=("${SOFT_DIFFUSION_REPO:-}" "$(dirname "${BASH_SOURCE[0]}")/..")
  local command
  command="$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | tr ' ' '\n' | sed -n 's/^Command=//p' | head -1 || true)"
  [[ -n "$command" ]] && candidates+=("$(dirname "$command")/..")
  candidates+=("${SLURM_SUBMIT_DIR:-.}")
  local c
  for c in "${candidates[@]}"; do
    if [[ -n "$c" && -f "$c/launch/common.sh" ]]; then
      (cd "$c" && pwd)
      return 0
    fi
  done
  return 1
}
if ! repo="$(find_repo)"; then
  echo "slurm.sh: cannot find the soft_diffusion checkout (not beside this script, not in the job's Command," \
    "not in $SLURM_SUBMIT_DIR); set SOFT_DIFFUSION_REPO=/path/to/soft_diffusion" >&2
  exit 2
fi
source "$repo/launch/common.sh"

gpus="${SLURM_GPUS_ON_NODE:-}"
if ! [[ "$gpus" =~ ^[1-9][0-9]*$ ]]; then
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    IFS=, read -ra visible <<<"$CUDA_VISIBLE_DEVICES"
    gpus="${#visible[@]}"
  else
    echo "slurm.sh: no GPUs in this job (SLURM_GPUS_ON_NODE and CUDA_VISIBLE_DEVICES are unset); request them with --gpus-per-node" >&2
    exit 2
  fi
fi
ids="$(seq -s, 0 $((gpus - 1)))"

export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
compile_cache_args "$@"
# Newer SLURM does not pass sbatch's --cpus-per-task on to srun: say it again.
run srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-16}" \
  "$PYTHON" -m soft_diffusion.main --distributed --local_device_ids="$ids" "${CACHE_ARGS[@]}" "$@"
