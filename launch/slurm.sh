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
# per task for the input pipeline) can be overridden on the sbatch command line. One task per GPU
# instead (some clusters bind GPUs to tasks only): sbatch --ntasks-per-node=8 --gpus-per-task=1
# --cpus-per-task=4 ...; each process then drives its one GPU.
#
# How the processes find each other: `--distributed` makes jax.distributed.initialize() read the
# job's environment (SLURM_STEP_NODELIST: the coordinator is the first node; SLURM_NTASKS: the
# number of processes; SLURM_PROCID: this one). On its own it would also give each process only
# the GPU of its local rank (SLURM_LOCALID, made for one task per GPU), so this script passes
# --local_device_ids with all the node's GPUs (SLURM_GPUS_ON_NODE, else CUDA_VISIBLE_DEVICES).
#
# Every process refuses to run unless jax finds the GPUs (`--require_backend=gpu`: an environment
# with the CPU-only jax, such as the .venv `make demo` builds, would otherwise train on the CPU
# without a word); SOFT_DIFFUSION_ALLOW_CPU=1 lifts that (rehearsals, tests).
#
# The workdir must be on a file system every node sees (or a gs:// bucket). Resubmitting the same
# command resumes from the last checkpoint. SIGTERM makes every process save the same step and
# exit 0; SLURM sends it (a) `--signal=TERM@120` below: 120 s before the job's time limit, and
# (b) on pre-emption or scancel, followed by SIGKILL after the cluster's KillWait/GraceTime
# (often 30 s: a CelebA checkpoint is written in well under that, but check your cluster's).
# `--signal` does not warn before a pre-emption. A run longer than the partition's time limit is
# a chain of jobs, each resuming where the last stopped (a job that finds training complete
# exits at once):
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm.sh --config CFG --workdir W    # prints its id, J1
#   sbatch --dependency=afterany:J1 --nodes=2 --gpus-per-node=8 launch/slurm.sh --config CFG --workdir W
#   ... (each next job depends on the one before; `sbatch --parsable` prints the bare id)
#
# and `sbatch --requeue` lets SLURM put a pre-empted job back in the queue by itself (where the
# partition allows it).
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
backend=(--require_backend=gpu)
[[ "${SOFT_DIFFUSION_ALLOW_CPU:-}" == 1 ]] && backend=()

export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
absolute_args "$@"  # relative paths are the caller's, not the checkout's
set -- ${ARGS[@]+"${ARGS[@]}"}
compile_cache_args "$@"
# Newer SLURM does not pass sbatch's --cpus-per-task on to srun: say it again.
tasks="${SLURM_NTASKS_PER_NODE:-1}"
tasks="${tasks%%(*}"  # SLURM writes '8(x2)' for 8 tasks on each of 2 nodes
if [[ "$tasks" =~ ^[0-9]+$ && "$tasks" -gt 1 ]]; then
  # One task per GPU (sbatch --ntasks-per-node=G --gpus-per-task=1): each process drives one GPU,
  # the one SLURM bound to it (then the only one it sees, device 0), else that of its local rank.
  pick='ids="$SLURM_LOCALID"; [[ -n "${CUDA_VISIBLE_DEVICES:-}" && "$CUDA_VISIBLE_DEVICES" != *,* ]] && ids=0'
  pick+='; exec "$0" -m soft_diffusion.main --distributed --local_device_ids="$ids" "$@"'
  run srun --kill-on-bad-exit=1 --ntasks-per-node="$tasks" --cpus-per-task="${SLURM_CPUS_PER_TASK:-16}" \
    bash -c "$pick" "$PYTHON" ${backend[@]+"${backend[@]}"} "${CACHE_ARGS[@]}" "$@"
else
  run srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-16}" \
    "$PYTHON" -m soft_diffusion.main --distributed --local_device_ids="$ids" ${backend[@]+"${backend[@]}"} "${CACHE_ARGS[@]}" "$@"
fi
