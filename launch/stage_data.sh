#!/usr/bin/env bash
# Uploads what a TPU pod's workers need on their local disks to a bucket folder, once: a prepared
# TFDS dataset (the ArrayRecord reader cannot read gs://) and the FID Inception weights, with a
# SHA256SUMS manifest that `launch/tpu_pod.sh --data URL` verifies on every worker.
#
#   python -m soft_diffusion.data.prepare celeb_a               # once, on this machine
#   launch/stage_data.sh gs://my-bucket/sd_data [--name celeb_a] [--data_dir ~/tensorflow_datasets] [--weights F]
#
# --weights: the Inception file to upload (default: the cached one, fetched first if missing).
#
# Layout of URL: tensorflow_datasets/<name>/..., inception/default_1.pt, SHA256SUMS.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

url="${1:-}"
[[ "$url" == gs://?* ]] || { echo "stage_data.sh: give the gs://bucket/folder to upload to, got '$url'" >&2; exit 2; }
shift
name=celeb_a
data_dir="${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}"
weights=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --data_dir) data_dir="$2"; shift 2 ;;
    --weights) weights="$2"; shift 2 ;;
    *) echo "stage_data.sh: unknown option $1 (allowed: --name, --data_dir, --weights)" >&2; exit 2 ;;
  esac
done
tfds_name="$("$PYTHON" -c 'import sys; from soft_diffusion.data import sources; print(sources.TFDS_NAMES.get(sys.argv[1], ""))' "$name")"
[[ -n "$tfds_name" ]] || { echo "stage_data.sh: --name must be one of celeb_a, digits, got '$name'" >&2; exit 2; }
if [[ ! -d "$data_dir/$tfds_name" ]]; then
  echo "stage_data.sh: $data_dir/$tfds_name is not prepared; run: python -m soft_diffusion.data.prepare $name --data_dir $data_dir" >&2
  exit 2
fi
command -v gcloud >/dev/null || { echo "stage_data.sh: gcloud is not installed" >&2; exit 2; }
if [[ -z "$weights" ]]; then
  weights="$("$PYTHON" -m soft_diffusion.evaluation.weights)"  # fetched into the cache once; prints the path
fi
[[ -f "$weights" ]] || { echo "stage_data.sh: --weights $weights is not a file" >&2; exit 2; }

manifest="$(mktemp)"
trap 'rm -f "$manifest"' EXIT
(cd "$data_dir" && find "$tfds_name" -type f -print0 | sort -z | xargs -0 sha256sum) | sed 's|  |  tensorflow_datasets/|' >"$manifest"
echo "$(sha256sum <"$weights" | cut -d' ' -f1)  inception/default_1.pt" >>"$manifest"
echo "stage_data.sh: $(wc -l <"$manifest") files to $url" >&2
run gcloud storage cp --recursive "$data_dir/$tfds_name" "$url/tensorflow_datasets/"
run gcloud storage cp "$weights" "$url/inception/default_1.pt"
run gcloud storage cp "$manifest" "$url/SHA256SUMS"
