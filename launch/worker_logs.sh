#!/usr/bin/env bash
# Runs on a TPU worker beside its training process (launch/tpu_pod.sh starts it): copies what the
# run appends to its log into the shared workdir, as numbered segments (an object store cannot
# append), every EVERY seconds and once more when the run has ended. The logs of every worker then
# outlive the VMs:
#
#   WORKDIR/logs/workers/<hostname>/segment_000001.log, segment_000002.log, ...   (cat them in order)
#
#   bash launch/worker_logs.sh PID LOG OFFSET DEST EVERY
#     PID: the run's process; LOG: its log file; OFFSET: the log's size when the run started (only
#     this run's lines are copied); DEST: the folder (gs://... through gcloud storage, or a path);
#     EVERY: seconds between copies.
set -uo pipefail
pid="$1" log="$2" offset="$3" dest="$4" every="$5"
n=0
segment="$(mktemp)"
trap 'rm -f "$segment"' EXIT

copy() {
  local name
  name="$(printf 'segment_%06d.log' "$n")"
  if [[ "$dest" == gs://* ]]; then
    gcloud storage cp "$segment" "$dest/$name" >/dev/null
  else
    mkdir -p "$dest" && cp "$segment" "$dest/$name"
  fi
}

upload() {
  local size
  size="$(stat -c %s "$log" 2>/dev/null || echo 0)"
  ((size > offset)) || return 0
  tail -c +"$((offset + 1))" "$log" | head -c "$((size - offset))" >"$segment"
  n=$((n + 1))
  if copy; then offset="$size"; else n=$((n - 1)); fi  # a failed copy is tried again next time
}

while kill -0 "$pid" 2>/dev/null; do
  sleep "$every"
  upload
done
upload
