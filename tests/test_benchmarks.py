"""The benchmark helpers report what they say: FLOPs of a whole sharded call, chips they know.
(The benchmarks themselves are scripts, not tests: their numbers depend on the machine.)"""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_benchmark_flops_count_every_device_and_know_the_tpu_kinds():
  """benchmarks/timing.compile_with_flops: XLA's cost analysis of a compiled SPMD program counts
  one device's share; the benchmark reports the whole call's FLOPs (times the devices), and the
  datasheet peaks know JAX's names for v5p ('TPU v5') and v5e ('TPU v5 lite')."""
  code = (
    "import sys; sys.path.insert(0, 'benchmarks')\n"
    "import jax, jax.numpy as jnp, numpy as np\n"
    "from jax.sharding import Mesh, NamedSharding, PartitionSpec as P\n"
    "from timing import compile_with_flops\n"
    "from train_step import datasheet_peak\n"
    "mesh = Mesh(np.array(jax.devices()), ('data',))\n"
    "x = jax.device_put(jnp.ones((64, 256)), NamedSharding(mesh, P('data')))\n"
    "flops = compile_with_flops(jax.jit(lambda x, w: x @ w), x, jnp.ones((256, 256)))[1]\n"
    "print(jax.device_count(), flops, datasheet_peak('TPU v5'), datasheet_peak('TPU v5 lite'))\n"
  )
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  devices, flops, v5p, v5e = out.stdout.split()
  assert int(devices) == 4 and float(flops) == 2 * 64 * 256 * 256 and float(v5p) == 459e12 and float(v5e) == 197e12


def test_accelerator_script_refuses_a_cpu_only_jax_in_one_line(tmp_path):
  """benchmarks/accelerator.sh is for a GPU or TPU: on a CPU-only jax it stops after the device
  check (one line naming the opt-out) and has written only that check into its output folder.
  (Run on a CPU with ACCELERATOR_ALLOW_CPU=1 and --config digits --batches 8 --steps 2 --nfe 2
  it completes in about 3 minutes on 2 cores: too slow for the suite.)"""
  env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu", "ACCELERATOR_ALLOW_CPU": ""}
  out = subprocess.run(
    ["bash", "benchmarks/accelerator.sh", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True
  )
  errors = [line for line in out.stderr.splitlines() if line.startswith("accelerator.sh:")]
  assert out.returncode == 2 and len(errors) == 1 and "ACCELERATOR_ALLOW_CPU=1" in errors[0], out.stderr[-2000:]
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["accelerator.log", "devices.txt"]
  usage = subprocess.run(["bash", "benchmarks/accelerator.sh"], cwd=REPO, env=env, capture_output=True, text=True)
  assert usage.returncode == 2 and "give the output folder" in usage.stderr
