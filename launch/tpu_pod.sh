#!/usr/bin/env bash
# Cloud TPU pod slice: the same command on every worker VM, started from your machine through
# gcloud. jax.distributed.initialize() finds its peers from the TPU metadata.
#
#   launch/tpu_pod.sh --tpu my-v4-64 --zone us-central2-b --setup       # once: clone + install on all workers
#   launch/tpu_pod.sh --tpu my-v4-64 --zone us-central2-b -- \
#     --config configs/celeba64.py --workdir gs://my-bucket/runs/celeba64
#
# Options (before `--`):
#   --tpu NAME --zone ZONE [--project P]   the TPU VM
#   --dir DIR      checkout on the workers (default: soft_diffusion, in the home directory)
#   --repo URL     git URL to clone there with --setup (default: this checkout's origin)
#   --setup        clone (or pull) and pip install -c constraints.txt -e '.[train,tpu]' into DIR/.venv on every worker, then stop
# The workdir must be shared by all workers: a gs:// bucket folder (or a shared file system).
# Pre-empted? Run the same command
# again: every worker resumes from the last checkpoint. The XLA compilation cache is on, in
# ~/.cache/soft_diffusion/jax on each worker; pass --compilation_cache_dir=gs://... after `--` to
# keep it across recreated VMs.
set -euo pipefail

tpu="" zone="" project="" dir="soft_diffusion" setup=0
repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" remote get-url origin 2>/dev/null || true)"
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    --tpu) tpu="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --repo) repo="$2"; shift 2 ;;
    --setup) setup=1; shift ;;
    *) echo "tpu_pod.sh: unknown option $1 (allowed: --tpu --zone --project --dir --repo --setup, then --)" >&2; exit 2 ;;
  esac
done
[[ "${1:-}" == "--" ]] && shift
if [[ -z "$tpu" || -z "$zone" ]]; then
  echo "tpu_pod.sh: --tpu and --zone are required" >&2; exit 2
fi
command -v gcloud >/dev/null || { echo "tpu_pod.sh: gcloud is not installed" >&2; exit 2; }

if [[ "$setup" == 1 ]]; then
  [[ -n "$repo" ]] || { echo "tpu_pod.sh: --setup needs --repo URL (no git origin here)" >&2; exit 2; }
  remote="set -e; if [[ -d $(printf %q "$dir") ]]; then git -C $(printf %q "$dir") pull --ff-only;"
  remote+=" else git clone $(printf %q "$repo") $(printf %q "$dir"); fi; cd $(printf %q "$dir");"
  remote+=" python3 -m venv .venv; .venv/bin/pip install --quiet -c constraints.txt -e '.[train,tpu]'"
else
  [[ $# -gt 0 ]] || { echo "tpu_pod.sh: nothing to run; pass soft_diffusion.main flags after --" >&2; exit 2; }
  args=""
  cache=' --compilation_cache_dir="$HOME/.cache/soft_diffusion/jax"'  # expanded on the worker
  for a in "$@"; do
    args+=" $(printf %q "$a")"
    [[ "$a" == --compilation_cache_dir* ]] && cache=""
  done
  args="$cache$args"
  remote="cd $(printf %q "$dir") && .venv/bin/python -m soft_diffusion.main --distributed$args"
fi
gcloud_args=(compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="$remote")
[[ -n "$project" ]] && gcloud_args+=(--project="$project")
printf '+ gcloud' >&2; printf ' %q' "${gcloud_args[@]}" >&2; printf '\n' >&2
exec gcloud "${gcloud_args[@]}"
