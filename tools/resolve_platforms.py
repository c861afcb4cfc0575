"""Asks the package registry whether `pip install '.[train]'` resolves, as binary wheels, on the
machines users have: Linux x86-64, Linux aarch64 and macOS arm64 (Python 3.11). Run by hand
(it needs the registry), not by the tests.

    python tools/resolve_platforms.py [--extras train] [--python 3.11]

pip evaluates environment markers with the interpreter that runs it, even with --platform, so
this script evaluates setup.py's markers for each target itself and passes pip the plain
requirements (markers of dependencies' own dependencies are still evaluated for this machine).
Prints one line per platform: resolved (with the TensorFlow wheel chosen) or pip's last error.
"""

from __future__ import annotations

import argparse
import pathlib
import runpy
import subprocess
import sys
import tempfile
from unittest import mock

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = pathlib.Path(__file__).resolve().parents[1]
# Pure-Python dependencies published as source only (tensorflow-datasets needs promise): built
# into wheels here first, which fit every platform, since pip's --platform takes wheels only.
SOURCE_ONLY = ["promise==2.3"]
PLATFORMS = {  # name: (pip --platform tags, marker environment)
  "linux x86_64": ([f"manylinux_2_{v}_x86_64" for v in (28, 27, 24, 17)] + ["manylinux2014_x86_64"], "linux", "x86_64"),
  "linux aarch64": (
    [f"manylinux_2_{v}_aarch64" for v in (28, 27, 24, 17)] + ["manylinux2014_aarch64"],
    "linux",
    "aarch64",
  ),
  "macOS arm64": (["macosx_12_0_arm64", "macosx_11_0_arm64", "macosx_14_0_arm64"], "darwin", "arm64"),
}


def requirements(extras: list[str]) -> list[str]:
  with mock.patch("setuptools.setup") as setup:
    runpy.run_path(str(REPO / "setup.py"))
  kwargs = setup.call_args.kwargs
  return [*kwargs["install_requires"], *[r for e in extras for r in kwargs["extras_require"][e]]]


def for_target(reqs: list[str], system: str, machine: str, python: str) -> list[str]:
  env = {**default_environment(), "sys_platform": system, "platform_machine": machine, "python_version": python}
  env["platform_system"] = {"linux": "Linux", "darwin": "Darwin"}[system]
  out = []
  for text in reqs:
    req = Requirement(text)
    if req.marker is None or req.marker.evaluate(env):
      req.marker = None
      out.append(str(req))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--extras", nargs="+", default=["train"])
  parser.add_argument("--python", default="3.11")
  args = parser.parse_args()
  reqs = requirements(args.extras)
  wheels = tempfile.mkdtemp()
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, *SOURCE_ONLY], check=True)
  failed = 0
  for name, (tags, system, machine) in PLATFORMS.items():
    target = for_target(reqs, system, machine, args.python)
    with tempfile.TemporaryDirectory() as tmp:
      command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--target", tmp]
      command += [
        "--only-binary=:all:",
        "--find-links",
        wheels,
        "--python-version",
        args.python,
        *[f"--platform={t}" for t in tags],
        *target,
      ]
      proc = subprocess.run(command, capture_output=True, text=True)
    tf = next((r for r in target if Requirement(r).name in ("tensorflow", "tensorflow-cpu")), "no tensorflow")
    if proc.returncode == 0:
      print(f"{name:14s} resolves ({tf})")
    else:
      failed += 1
      last = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["(no message)"]
      print(f"{name:14s} FAILS: {last[0]}")
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
