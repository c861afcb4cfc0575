"""First-hour correctness check: one train step of the tiny config on this accelerator against the CPU's values.

    python tools/golden_step.py            # exit 0 when both checks pass, 1 when one fails
    python tools/golden_step.py --json OUT.json

tests/golden_train_step.json holds the loss, gradient norm, update and EMA sizes of one train
step of configs/tiny.py (with the pins it names) recorded on the CPU in float32; tests/test_train.py
holds every CPU to them at 1e-5. Here the same step runs on the default backend twice:

- float32 with matmuls and convolutions at 'highest' precision (a GPU would otherwise use TF32,
  a TPU bfloat16 passes): must match within 1e-4 relative (a different device sums in another
  order; the CPU's own runs agree to 1e-6);
- model.dtype = 'auto' (bfloat16 compute on a GPU or TPU, parameters and loss float32): must
  match within 5e-2 relative. On the CPU, model.dtype = 'bfloat16' moves the gradient norm by
  3.3e-3 and the loss by less than 1e-6 (relative, measured with this script; the initial
  network's output is small next to the residual form's x_t): the bound leaves a margin of about
  15x for another device's bfloat16 kernels.

The update and EMA sizes follow Adam's first step (about lr per parameter whatever the gradient)
and barely move with precision; the loss and the gradient norm are the sensitive values. A
failure here means the accelerator computes another step than the CPU does: stop before a
long run and compare `python tools/golden_step.py` across jax versions or XLA flags.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden_train_step.json"
TOLERANCE = {"float32": 1e-4, "auto": 5e-2}


def one_step(dtype: str) -> dict[str, float]:
  """The step of tests/test_train.py (same config, pins, state, batch and keys) in `dtype`."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from soft_diffusion import corruptions, models
  from soft_diffusion.run import schema
  from soft_diffusion.run import settings as settings_lib
  from soft_diffusion.run import state as state_lib
  from soft_diffusion.run.modes import train

  config = schema.load_config(str(REPO / "configs" / "tiny.py"))
  for key, value in json.loads(GOLDEN.read_text())["pins"].items():
    block, field = key.split(".")
    config[block][field] = value
  config.model.dtype = dtype
  settings = settings_lib.load(config)
  model = models.make_network(settings.model, backend=jax.default_backend())
  optimizer, lr_schedule = state_lib.make_optimizer(settings.optim)
  corruption = corruptions.make(settings.corruption)
  state = state_lib.create_state(
    model, optimizer, (8, 8, 1), settings.seed, state_lib.replicated(state_lib.make_mesh())
  )
  start = jax.tree.map(np.asarray, state.params)
  yy, xx = np.meshgrid(np.linspace(-1, 1, 8), np.linspace(-1, 1, 8), indexing="ij")
  batch = np.stack([np.sin(3 * (k + 1) * xx * yy + k) for k in range(8)])[..., None].astype(np.float32)
  step = jax.jit(train.make_train_step(model, corruption, optimizer, lr_schedule, settings))
  precision = "highest" if dtype == "float32" else None
  with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
    new, metrics = step(state, jnp.asarray(batch))
  moved = jax.tree.leaves(new.params)
  return {
    "loss": float(metrics["loss"]),
    "grad_norm": float(metrics["grad_norm"]),
    "update_l1": float(
      sum(np.abs(np.asarray(a) - b).sum() for a, b in zip(moved, jax.tree.leaves(start), strict=True))
    ),
    "ema_l1": float(sum(np.abs(np.asarray(a)).sum() for a in jax.tree.leaves(new.ema_params))),
  }


def compare(got: dict[str, float], golden: dict[str, float], tolerance: float) -> tuple[dict[str, float], bool]:
  """Relative differences per value, and whether all are within `tolerance`."""
  rel = {k: abs(got[k] - v) / abs(v) for k, v in golden.items()}
  return rel, all(r <= tolerance for r in rel.values())


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dtypes", nargs="+", default=["float32", "auto"], choices=["float32", "auto", "bfloat16"])
  parser.add_argument("--json", type=pathlib.Path, default=None)
  args = parser.parse_args()
  if args.json and not args.json.parent.is_dir():
    parser.error(f"--json {args.json}: its folder does not exist")
  import jax

  golden = json.loads(GOLDEN.read_text())["values"]
  kind = jax.devices()[0].device_kind
  print(f"golden step on {jax.default_backend()} ({kind}), jax {jax.__version__}")
  record, ok = {"backend": jax.default_backend(), "device_kind": kind, "jax": jax.__version__, "runs": {}}, True
  for dtype in args.dtypes:
    got = one_step(dtype)
    tolerance = TOLERANCE.get(dtype, TOLERANCE["auto"])
    rel, passed = compare(got, golden, tolerance)
    ok &= passed
    record["runs"][dtype] = {"values": got, "relative": rel, "tolerance": tolerance, "passed": passed}
    worst = max(rel, key=rel.get)
    print(
      f"model.dtype {dtype}: "
      + ", ".join(f"{k} {got[k]:.6g} ({rel[k]:.1e})" for k in golden)
      + f" -> {'ok' if passed else 'FAILED'} (largest {worst} {rel[worst]:.1e}, bound {tolerance:.0e})"
    )
  if args.json:
    args.json.write_text(json.dumps(record, indent=1) + "\n")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
