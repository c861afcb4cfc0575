#!/usr/bin/env bash
# Cloud TPU pod slice, driven from your machine through gcloud: every worker VM runs the same
# command, detached from your ssh session, and jax.distributed.initialize() finds its peers from
# the TPU metadata.
#
#   T="--tpu my-v4-64 --zone us-central2-b"
#   launch/tpu_pod.sh $T --setup                     # once per commit: interpreter, checkout, packages
#   launch/tpu_pod.sh --stage_data gs://my-bucket/sd_data   # once, here: upload the prepared data
#   launch/tpu_pod.sh $T --data gs://my-bucket/sd_data      # once per VM: copy it to every worker's disk
#   launch/tpu_pod.sh $T -- --config configs/celeba64.py --workdir gs://my-bucket/runs/celeba64
#   launch/tpu_pod.sh $T --logs [all]               # follow worker 0's log / the last lines of every worker's
#   launch/tpu_pod.sh $T --stop                     # SIGTERM to every worker: they save one step together and exit
#
# Options:
#   --tpu NAME --zone ZONE [--project P]   the TPU VM
#   --dir DIR       the checkout on the workers (default: soft_diffusion, in the home directory)
#   --repo URL      git URL the workers clone with --setup (default: this checkout's origin)
#   --env NAME[=VALUE]   exported on every worker for the run (repeatable; without a value, this
#                   machine's): LIBTPU_INIT_ARGS, XLA_FLAGS, TF_CPP_MIN_LOG_LEVEL, ...
#   --gcloud_flag FLAG   passed to every `gcloud compute tpus tpu-vm ssh` (repeatable), e.g.
#                   --gcloud_flag=--internal-ip or --gcloud_flag=--tunnel-through-iap
#   --log_every S   seconds between copies of each worker's log into WORKDIR/logs/workers/<host>/
#                   (numbered segments, launch/worker_logs.sh; default 300, and once at the end)
#   --setup         on every worker, without root: uv $UV_VERSION (pip --user, else its installer
#                   into ~/.local/bin), Python $PYTHON_VERSION through uv (TPU VM images ship 3.10
#                   and no venv module), the checkout pinned to this checkout's commit, and the
#                   locked packages (constraints.txt, '.[train,tpu]') in DIR/.venv; then checks the
#                   interpreter version on each worker. Commit and push first: the workers fetch it
#                   (refused here, before any worker is touched, when no remote branch has it).
#   --stage_data URL [stage_data.sh options]   here, not on the workers: upload the prepared
#                   CelebA (TFDS folder) and the FID Inception weights to URL with a SHA256SUMS
#                   manifest (launch/stage_data.sh)
#   --data URL      on every worker, once: copy URL to the local disk, verify SHA256SUMS, then place
#                   the dataset in ~/tensorflow_datasets and the weights in the cache (the ArrayRecord
#                   reader cannot read gs://, and no worker downloads anything else)
#   --logs [all]    worker 0's log, followed (or the last 50 lines of every worker's)
#   --stop          SIGTERM to the run on every worker
#   -- ARGS         start `python -m soft_diffusion.main --distributed ARGS` on every worker, detached
#                   (nohup; log ~/soft_diffusion_run.log, pid ~/soft_diffusion_run.pid), after
#                   checking here that the --config file is in this commit unchanged, and on the
#                   slice that every one of its workers answers (their count from `gcloud ...
#                   describe`) and is on this checkout's commit; else nothing starts
# The workdir must be shared by all workers: a gs:// bucket folder (or a shared file system).
# Pre-empted? Run the same command again: every worker resumes from the last checkpoint. The XLA
# compilation cache is on, beside the workdir (WORKDIR/../compilation_cache, shared by every
# worker: JAX writes cache entries from process 0 only, so a per-worker folder would serve worker
# 0 alone); pass --compilation_cache_dir=... after `--` to put it elsewhere.
set -euo pipefail

UV_VERSION=0.13.9
PYTHON_VERSION=3.11
LOG='$HOME/soft_diffusion_run.log'  # expanded on the worker
PIDFILE='$HOME/soft_diffusion_run.pid'
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

tpu="" zone="" project="" dir="soft_diffusion" action=run logs_of=0 url=""
envs=() gcloud_flags=() log_every=300
repo="$(git -C "$HERE" remote get-url origin 2>/dev/null || true)"
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    --tpu) tpu="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --repo) repo="$2"; shift 2 ;;
    --env)
      [[ "${2:-}" =~ ^[A-Za-z_][A-Za-z0-9_]*(=.*)?$ ]] || { echo "tpu_pod.sh: --env needs NAME or NAME=VALUE, got '${2:-}'" >&2; exit 2; }
      if [[ "$2" == *=* ]]; then envs+=("$2"); else envs+=("$2=${!2-}"); fi
      shift 2 ;;
    --env=*) set -- --env "${1#--env=}" "${@:2}" ;;
    --log_every)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "tpu_pod.sh: --log_every needs seconds >= 1, got '${2:-}'" >&2; exit 2; }
      log_every="$2"; shift 2 ;;
    --gcloud_flag) gcloud_flags+=("${2:?tpu_pod.sh: --gcloud_flag needs a flag}"); shift 2 ;;
    --gcloud_flag=*) gcloud_flags+=("${1#--gcloud_flag=}"); shift ;;
    --setup) action=setup; shift ;;
    --stop) action=stop; shift ;;
    --logs)
      action=logs; shift
      if [[ "${1:-}" == all ]]; then logs_of=all; shift; fi ;;
    --data | --stage_data)
      action="${1#--}"; url="${2:-}"; shift 2 || { echo "tpu_pod.sh: $1 needs a gs:// URL" >&2; exit 2; }
      [[ "$url" == gs://?* ]] || { echo "tpu_pod.sh: --$action needs a gs://bucket/folder URL, got '$url'" >&2; exit 2; } ;;
    *) echo "tpu_pod.sh: unknown option $1 (allowed: --tpu --zone --project --dir --repo --env --gcloud_flag --log_every --setup --data --stage_data --logs --stop, then --)" >&2; exit 2 ;;
  esac
done
[[ "${1:-}" == "--" ]] && shift
command -v gcloud >/dev/null || { echo "tpu_pod.sh: gcloud is not installed" >&2; exit 2; }

q() { printf '%q' "$1"; }

if [[ "$action" == stage_data ]]; then
  exec bash "$HERE/launch/stage_data.sh" "$url" "$@"
fi
if [[ -z "$tpu" || -z "$zone" ]]; then
  echo "tpu_pod.sh: --tpu and --zone are required" >&2; exit 2
fi

# Runs `command` on workers `which` (all, or a number) through gcloud's ssh.
on_workers() {
  local which="$1" command="$2"
  local gcloud_args=(compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker="$which" --command="$command")
  [[ -n "$project" ]] && gcloud_args+=(--project="$project")
  gcloud_args+=(${gcloud_flags[@]+"${gcloud_flags[@]}"})
  printf '+ gcloud' >&2; printf ' %q' "${gcloud_args[@]}" >&2; printf '\n' >&2
  gcloud "${gcloud_args[@]}"
}

commit="$(git -C "$HERE" rev-parse HEAD 2>/dev/null || true)"
case "$action" in
  setup)
    [[ -n "$repo" ]] || { echo "tpu_pod.sh: --setup needs --repo URL (no git origin here)" >&2; exit 2; }
    [[ -n "$commit" ]] || { echo "tpu_pod.sh: --setup pins the workers to this checkout's commit, but $HERE is not a git checkout" >&2; exit 2; }
    # The workers fetch the commit from $repo: a local repository must hold it, a remote one must
    # have it on a branch (pushed), or every worker would fail the checkout after the install.
    if [[ -d "$repo" ]]; then
      git -C "$repo" cat-file -e "$commit^{commit}" 2>/dev/null || { echo "tpu_pod.sh: $repo does not have commit ${commit:0:12}" >&2; exit 2; }
    elif [[ -z "$(git -C "$HERE" branch -r --contains "$commit" 2>/dev/null)" ]]; then
      echo "tpu_pod.sh: commit ${commit:0:12} is on no remote branch; push it first (git push), the workers fetch it from $repo" >&2
      exit 2
    fi
    if [[ -n "$(git -C "$HERE" status --porcelain --untracked-files=no)" ]]; then
      echo "tpu_pod.sh: note: uncommitted changes here are not on the workers (they get commit ${commit:0:12})" >&2
    fi
    remote="set -euo pipefail; export PATH=\"\$HOME/.local/bin:\$PATH\"; d=$(q "$dir")"
    remote+="; if ! command -v uv >/dev/null || [[ \"\$(uv --version)\" != 'uv $UV_VERSION'* ]]; then"
    remote+=" python3 -m pip install --user --quiet uv==$UV_VERSION || curl -LsSf https://astral.sh/uv/$UV_VERSION/install.sh | sh; fi"
    remote+="; [[ -d \"\$d/.git\" ]] || git clone --quiet $(q "$repo") \"\$d\""
    remote+="; git -C \"\$d\" fetch --quiet origin; git -C \"\$d\" checkout --quiet --detach $commit; cd \"\$d\""
    remote+="; uv python install --quiet $PYTHON_VERSION; uv venv --quiet --allow-existing --python $PYTHON_VERSION .venv"
    remote+="; v=\"\$(.venv/bin/python -c 'import sys; print(*sys.version_info[:2], sep=\".\")')\""
    remote+="; printf '3.11\\n%s\\n' \"\$v\" | sort -VC || { echo \"worker \$(hostname): \$d/.venv/bin/python is Python \$v; soft_diffusion needs >= 3.11\" >&2; exit 3; }"
    remote+="; uv pip install --quiet --python .venv/bin/python -c constraints.txt -e '.[train,tpu]'"
    remote+="; echo \"worker \$(hostname): \$(git rev-parse --short=12 HEAD), \$(.venv/bin/python --version)\""
    on_workers all "$remote"
    ;;
  data)
    remote="set -euo pipefail; url=$(q "$url"); stage=\"\$HOME/.cache/soft_diffusion/staged\""
    remote+="; if [[ \"\$(cat \"\$stage/SOURCE\" 2>/dev/null)\" == \"\$url\" ]]; then echo \"worker \$(hostname): \$url is here already\"; exit 0; fi"
    remote+="; tmp=\"\$stage.tmp\"; rm -rf \"\$tmp\"; mkdir -p \"\$tmp\"; gcloud storage cp --recursive \"\$url/*\" \"\$tmp/\""
    remote+="; (cd \"\$tmp\" && sha256sum --quiet --check SHA256SUMS) || { echo \"worker \$(hostname): \$url does not match its SHA256SUMS; stage it again\" >&2; exit 3; }"
    remote+="; mkdir -p \"\$HOME/tensorflow_datasets\" \"\$HOME/.cache/soft_diffusion/inception\""
    remote+="; cp -r \"\$tmp/tensorflow_datasets/.\" \"\$HOME/tensorflow_datasets/\""
    remote+="; cp \"\$tmp/inception/default_1.pt\" \"\$HOME/.cache/soft_diffusion/inception/default_1.pt\""
    remote+="; rm -rf \"\$stage\"; mkdir -p \"\$stage\"; cp \"\$tmp/SHA256SUMS\" \"\$stage/\"; rm -rf \"\$tmp\"; echo \"\$url\" > \"\$stage/SOURCE\""
    remote+="; echo \"worker \$(hostname): \$url copied and verified\""
    on_workers all "$remote"
    ;;
  logs)
    if [[ "$logs_of" == all ]]; then
      on_workers all "echo \"== worker \$(hostname)\"; tail -n 50 $LOG"
    else
      on_workers 0 "tail -n 100 -F $LOG"
    fi
    ;;
  stop)
    remote="if [[ -f $PIDFILE ]] && kill -0 \"\$(cat $PIDFILE)\" 2>/dev/null; then kill -TERM \"\$(cat $PIDFILE)\";"
    remote+=" echo \"worker \$(hostname): SIGTERM sent\"; else echo \"worker \$(hostname): no run\"; fi"
    on_workers all "$remote"
    ;;
  run)
    [[ $# -gt 0 ]] || { echo "tpu_pod.sh: nothing to run; pass soft_diffusion.main flags after --" >&2; exit 2; }
    [[ -n "$commit" ]] || { echo "tpu_pod.sh: $HERE is not a git checkout; the workers' commit cannot be checked" >&2; exit 2; }
    # 0. The config the workers will read is this commit's: in git, unchanged (checked here).
    config="" workdir="" prev=""
    for a in "$@"; do
      case "$prev" in --config) config="$a" ;; --workdir) workdir="$a" ;; esac
      case "$a" in --config=*) config="${a#--config=}" ;; --workdir=*) workdir="${a#--workdir=}" ;; esac
      prev="$a"
    done
    [[ -n "$config" && -n "$workdir" ]] || { echo "tpu_pod.sh: pass --config FILE and --workdir DIR after --" >&2; exit 2; }
    file="${config%%:*}"
    if [[ "$file" == /* ]] || ! git -C "$HERE" ls-files --error-unmatch -- "$file" >/dev/null 2>&1; then
      echo "tpu_pod.sh: --config $file is not a file of this checkout's commit ${commit:0:12} (the workers read it from their checkout, relative to it); commit it, push, --setup" >&2
      exit 2
    fi
    if ! git -C "$HERE" diff --quiet HEAD -- "$file"; then
      echo "tpu_pod.sh: --config $file has changes not in commit ${commit:0:12}; the workers would run the committed version: commit it, push, --setup" >&2
      exit 2
    fi
    # 1. Every worker of the slice answers, on this checkout's commit, with no run still going;
    # else nothing starts (an unreachable worker would leave the others waiting for it forever).
    describe=(compute tpus tpu-vm describe "$tpu" --zone="$zone" --format="value(networkEndpoints[].ipAddress)")
    [[ -n "$project" ]] && describe+=(--project="$project")
    expected="$(gcloud "${describe[@]}" | tr ';, ' '\n\n\n' | grep -c . || true)"
    [[ "$expected" =~ ^[1-9][0-9]*$ ]] || { echo "tpu_pod.sh: gcloud describe $tpu gave no workers; check --tpu, --zone, --project" >&2; exit 2; }
    check="cd $(q "$dir") 2>/dev/null && echo \"STATE \$(hostname) \$(git rev-parse HEAD)"
    check+=" \$([[ -f $PIDFILE ]] && kill -0 \"\$(cat $PIDFILE)\" 2>/dev/null && echo running || echo idle)\" || echo \"STATE \$(hostname) none idle\""
    states="$(on_workers all "$check" | grep '^STATE ' || true)"
    [[ -n "$states" ]] || { echo "tpu_pod.sh: no worker answered" >&2; exit 2; }
    answered="$(grep -c . <<<"$states")"
    if [[ "$answered" != "$expected" ]]; then
      echo "tpu_pod.sh: $answered of the slice's $expected workers answered; every worker must run (nothing was started)" >&2
      exit 2
    fi
    bad="$(awk -v c="$commit" '$3 != c { printf " %s (at %s)", $2, substr($3, 1, 12) }' <<<"$states")"
    if [[ -n "$bad" ]]; then
      echo "tpu_pod.sh: workers not on this checkout's commit ${commit:0:12}:$bad; run --setup first (nothing was started)" >&2
      exit 2
    fi
    busy="$(awk '$4 == "running" { printf " %s", $2 }' <<<"$states")"
    if [[ -n "$busy" ]]; then
      echo "tpu_pod.sh: a run is still going on:$busy; --stop it first (nothing was started)" >&2
      exit 2
    fi
    # 2. Start detached: the run outlives this ssh session.
    args=""
    parent="${workdir%/}"; parent="${parent%/*}"; [[ "$parent" == "${workdir%/}" ]] && parent="."
    cache=" --compilation_cache_dir=$(q "$parent/compilation_cache")"  # shared, beside the workdir
    for a in "$@"; do
      args+=" $(q "$a")"
      [[ "$a" == --compilation_cache_dir* ]] && cache=""
    done
    exports=""
    for e in ${envs[@]+"${envs[@]}"}; do exports+="export ${e%%=*}=$(q "${e#*=}"); "; done
    logs="${workdir%/}/logs/workers"  # each worker's log is copied here (launch/worker_logs.sh)
    remote="cd $(q "$dir") || exit 3; off=\$(stat -c %s $LOG 2>/dev/null || echo 0)"
    remote+="; ${exports}nohup .venv/bin/python -m soft_diffusion.main --distributed$cache$args"
    remote+=" >> $LOG 2>&1 < /dev/null & echo \$! > $PIDFILE"
    remote+="; nohup bash launch/worker_logs.sh \$(cat $PIDFILE) $LOG \$off $(q "$logs")/\$(hostname) $log_every > /dev/null 2>&1 < /dev/null &"
    remote+=" echo \"worker \$(hostname): started, pid \$(cat $PIDFILE), log $LOG, copied to $(q "$logs")/\$(hostname)\""
    on_workers all "$remote"
    echo "tpu_pod.sh: started on every worker; follow with --logs, stop with --stop" >&2
    ;;
esac
