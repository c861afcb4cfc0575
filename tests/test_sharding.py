"""A batch sharded over 8 (fake CPU) devices gives the same results as an unsharded batch.

XLA's fake device count must be fixed before jax is imported, so the checks run in a
subprocess (tests/sharded_worker.py) and the rest of the suite keeps one device.
"""

import os
import pathlib
import subprocess
import sys

from soft_diffusion import corruptions, samplers


def test_functional_core_on_a_sharded_batch():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  worker = pathlib.Path(__file__).with_name("sharded_worker.py")
  proc = subprocess.run([sys.executable, str(worker)], env=env, capture_output=True, text=True, timeout=600)
  print(proc.stdout)
  assert proc.returncode == 0, f"sharded worker failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
  # The worker checks to_global_array, gaussian_blur and the Inception features once, for every
  # corruption its `corrupt` and the loss, every sampler on blur and Momentum on the others.
  expected = 3 + 2 * len(corruptions.REGISTRY) + len(samplers.SAMPLERS) + (len(corruptions.REGISTRY) - 1)
  assert proc.stdout.count("sharded == unsharded") == expected, proc.stdout
