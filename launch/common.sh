# Sourced by the launch scripts: go to the repository root (the configs named on the command line
# are relative to it) and pick the Python that has soft_diffusion installed: $PYTHON, else the
# repo's .venv, else python3.
# Hyper-parameters never live here: they are in configs/ and in --config.x.y=v overrides.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER="$PWD"  # relative paths on the command line are the caller's (absolute_args)
cd "$REPO"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import soft_diffusion" 2>/dev/null; then
  echo "launch: $PYTHON cannot import soft_diffusion; run 'make demo' once, or pip install -c constraints.txt -e '.[train,gpu]' / '.[train,tpu]'," \
    "or set PYTHON to an interpreter that has it" >&2
  exit 2
fi

# Prints a command (shell-quoted) to stderr, then runs it.
run() {
  printf '+' >&2
  printf ' %q' "$@" >&2
  printf '\n' >&2
  "$@"
}

# The persistent XLA compilation cache, on by default: a restarted or preempted run loads its
# compiled programs instead of compiling for minutes. Sets CACHE_ARGS to
# (--compilation_cache_dir=DIR) unless the arguments already name one.
# DIR: $SOFT_DIFFUSION_COMPILATION_CACHE (relative: to the caller's folder), else ~/.cache/soft_diffusion/jax.
compile_cache_args() {
  CACHE_ARGS=()
  local a
  for a in "$@"; do
    [[ "$a" == --compilation_cache_dir* ]] && return 0
  done
  CACHE_ARGS=("--compilation_cache_dir=$(absolute_path --compilation_cache_dir "${SOFT_DIFFUSION_COMPILATION_CACHE:-$HOME/.cache/soft_diffusion/jax}")")
}

# Sets ARGS to "$@" with the paths made absolute against the caller's folder, since the run
# starts in the checkout: --workdir, --compilation_cache_dir, --config.data.path,
# --config.restore.input, and --config when the file is there (a config named relative to the
# checkout, such as configs/digits.py, stays as it is). URLs (gs://...) are left alone.
absolute_args() {
  ARGS=()
  local a value name expect=""
  for a in "$@"; do
    if [[ -n "$expect" ]]; then
      ARGS+=("$(absolute_path "$expect" "$a")")
      expect=""
      continue
    fi
    case "$a" in
      --workdir | --config | --compilation_cache_dir) expect="$a"; ARGS+=("$a") ;;
      --workdir=* | --config=* | --compilation_cache_dir=* | --config.data.path=* | --config.restore.input=*)
        name="${a%%=*}" value="${a#*=}"
        ARGS+=("$name=$(absolute_path "$name" "$value")") ;;
      *) ARGS+=("$a") ;;
    esac
  done
}

absolute_path() {  # FLAG VALUE -> VALUE, absolute against $CALLER where it is a relative path
  local flag="$1" value="$2" file
  if [[ -z "$value" || "$value" == /* || "$value" == *://* || "$value" == "~"* ]]; then
    printf '%s' "$value"
  elif [[ "$flag" == --config ]]; then
    file="${value%%:*}"  # FILE.py[:FORM]
    if [[ "$CALLER" != "$REPO" && -f "$CALLER/$file" ]]; then printf '%s' "$CALLER/$value"; else printf '%s' "$value"; fi
  else
    printf '%s' "$CALLER/$value"
  fi
}
