# Sourced by the launch scripts: go to the repository root (configs/ are imported from there) and
# pick the Python that has soft_diffusion installed: $PYTHON, else the repo's .venv, else python3.
# Hyper-parameters never live here: they are in configs/ and in --config.x.y=v overrides.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
# DIR: $SOFT_DIFFUSION_COMPILATION_CACHE, else ~/.cache/soft_diffusion/jax.
compile_cache_args() {
  CACHE_ARGS=()
  local a
  for a in "$@"; do
    [[ "$a" == --compilation_cache_dir* ]] && return 0
  done
  CACHE_ARGS=("--compilation_cache_dir=${SOFT_DIFFUSION_COMPILATION_CACHE:-$HOME/.cache/soft_diffusion/jax}")
}
