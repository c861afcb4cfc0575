#!/usr/bin/env bash
# One machine, no scheduler: one process (default), or N processes joined by jax.distributed over
# localhost, e.g. to rehearse a multi-host run on a laptop with fake CPU devices.
#
#   launch/local.sh --config configs/digits.py --workdir runs/digits
#   launch/local.sh --processes 2 --cpu_devices 4 -- --config configs/digits.py --workdir runs/d2
#
# Options (before `--`; everything after it, or everything if no option is given, goes to
# soft_diffusion.main):
#   --processes N     processes on this machine (default 1); N > 1 adds --distributed with a
#                     localhost coordinator, and the run fails if any process fails
#   --cpu_devices D   run on the CPU with D fake devices per process (XLA_FLAGS; default: real devices)
#   --port P          coordinator port for N > 1 (default: a free one)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

processes=1
cpu_devices=""
port=""
if [[ "${1:-}" == --processes || "${1:-}" == --cpu_devices || "${1:-}" == --port ]]; then
  while [[ $# -gt 0 && "$1" != "--" ]]; do
    case "$1" in
      --processes) processes="$2"; shift 2 ;;
      --cpu_devices) cpu_devices="$2"; shift 2 ;;
      --port) port="$2"; shift 2 ;;
      *) echo "local.sh: unknown option $1 (allowed: --processes, --cpu_devices, --port, then --)" >&2; exit 2 ;;
    esac
  done
  [[ "${1:-}" == "--" ]] && shift
fi
if ! [[ "$processes" =~ ^[1-9][0-9]*$ ]]; then
  echo "local.sh: --processes must be an integer >= 1, got '$processes'" >&2; exit 2
fi
if [[ -n "$cpu_devices" ]]; then
  if ! [[ "$cpu_devices" =~ ^[1-9][0-9]*$ ]]; then
    echo "local.sh: --cpu_devices must be an integer >= 1, got '$cpu_devices'" >&2; exit 2
  fi
  export JAX_PLATFORMS=cpu
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$cpu_devices"
fi

absolute_args "$@"  # relative paths are the caller's, not the checkout's
set -- ${ARGS[@]+"${ARGS[@]}"}
compile_cache_args "$@"
if [[ "$processes" == 1 ]]; then
  run "$PYTHON" -m soft_diffusion.main "${CACHE_ARGS[@]}" "$@"
  exit $?
fi

if [[ -z "$port" ]]; then
  port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; }
trap cleanup INT TERM
for ((i = 0; i < processes; i++)); do
  run "$PYTHON" -m soft_diffusion.main --distributed --coordinator_address="127.0.0.1:$port" \
    --num_processes="$processes" --process_id="$i" "${CACHE_ARGS[@]}" "$@" &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  if ! wait "$pid"; then status=1; cleanup; fi
done
exit "$status"
