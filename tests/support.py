"""Helpers shared by several test files (fixtures live in conftest.py)."""

import importlib.util
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAINED_STEPS = 2  # conftest.trained_run: configs/tiny.py trained this long, one checkpoint at the end


def cpu_env(**extra: str) -> dict[str, str]:
  """This process's environment, with JAX on the CPU and `extra` added."""
  return {**os.environ, "JAX_PLATFORMS": "cpu", **extra}


def cli(workdir, *flags, config="configs/tiny.py", env=None, timeout=300):
  """`python -m soft_diffusion.main --config <config> --workdir <workdir> <flags>` in a subprocess
  on the CPU, from the repository root; returns the CompletedProcess (text output)."""
  command = [sys.executable, "-m", "soft_diffusion.main", f"--config={config}", f"--workdir={workdir}", *flags]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=cpu_env(**(env or {})))


def checkpoint_steps(workdir) -> list[int]:
  """The complete checkpoint steps in WORKDIR/checkpoints."""
  root = pathlib.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []


def saved_state(workdir, step):
  """The saved train state as arrays on this process's first device, whatever topology saved it."""
  import jax
  import orbax.checkpoint as ocp

  manager = ocp.CheckpointManager(
    pathlib.Path(workdir).resolve() / "checkpoints", item_handlers={"state": ocp.StandardCheckpointHandler()}
  )
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), manager.item_metadata(step)["state"]
  )
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]


def flat(tree) -> dict[str, np.ndarray]:
  """{path: array} of a pytree's leaves."""
  import jax

  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def free_port() -> int:
  """A TCP port on localhost that nothing listens on now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def load_script(path: str, *siblings: str):
  """The module of a script in studies/, benchmarks/ or tools/ (folders, not packages), loaded by
  `path` (from the repository root) and kept in sys.modules under its file's name; `siblings` are
  the modules beside it that it imports plainly (as `python FOLDER/SCRIPT.py` finds them), loaded
  the same way first. A module already loaded from that file is returned as it is."""
  file = REPO / path
  for name in siblings:
    load_script(str(file.parent.relative_to(REPO) / f"{name}.py"))
  module = sys.modules.get(file.stem)
  if module is not None and getattr(module, "__file__", None) == str(file):
    return module
  spec = importlib.util.spec_from_file_location(file.stem, file)
  module = importlib.util.module_from_spec(spec)
  sys.modules[file.stem] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    sys.modules.pop(file.stem, None)
    raise
  return module
