#!/usr/bin/env bash
# Downloads, here (where the package registry is reachable), the wheels tools/accelerator.sh
# needs on an accelerator machine whose image has jax, flax, optax, orbax and their kin but not
# these, into .whl/ (ignored by git through .git/info/exclude): the versions of constraints.txt,
# for CPython 3.12 on x86-64 Linux. Their own needs (absl-py, cloudpickle, etils, numpy,
# protobuf, psutil) are on such an image already.
#
#   tools/accelerator_wheels.sh [PYTHON_VERSION]     # default 3.12
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version="${1:-3.12}"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
for name in grain array_record portpicker; do
  pin="$(grep -iE "^${name//_/[-_]}==" constraints.txt)" || { echo "accelerator_wheels.sh: $name is not in constraints.txt" >&2; exit 2; }
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
  done
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    "${platforms[@]}" -d .whl "$pin"
done
ls -l .whl
