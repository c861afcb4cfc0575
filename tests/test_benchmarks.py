"""The benchmark helpers report what they say: FLOPs of a whole sharded call, chips they know.
(The benchmarks themselves are scripts, not tests: their numbers depend on the machine.)"""

import os
import pathlib
import subprocess
import sys

from support import load_script

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_benchmark_flops_count_every_device_and_know_the_tpu_kinds():
  """benchmarks/timing.compile_with_flops: XLA's cost analysis of a compiled SPMD program counts
  one device's share; the benchmark reports the whole call's FLOPs (times the devices), and the
  datasheet peaks know JAX's names for v5p ('TPU v5') and v5e ('TPU v5 lite')."""
  code = (  # run in benchmarks/, where the scripts import their helpers from
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
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO / "benchmarks", env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  devices, flops, v5p, v5e = out.stdout.split()
  assert int(devices) == 4 and float(flops) == 2 * 64 * 256 * 256 and float(v5p) == 459e12 and float(v5e) == 197e12


def test_accelerator_script_refuses_a_cpu_only_jax_in_one_line(tmp_path):
  """tools/accelerator.sh is for a GPU or TPU: on a CPU-only jax it stops after the device
  check (one line naming the opt-out) and has written only that check into its output folder.
  (Run on a CPU with ACCELERATOR_ALLOW_CPU=1 and --config digits --batches 8 --steps 2 --nfe 2
  it completes in about 3 minutes on 2 cores: too slow for the suite.)"""
  env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu", "ACCELERATOR_ALLOW_CPU": ""}
  out = subprocess.run(
    ["bash", "tools/accelerator.sh", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True
  )
  errors = [line for line in out.stderr.splitlines() if line.startswith("accelerator.sh:")]
  assert out.returncode == 2 and len(errors) == 1 and "ACCELERATOR_ALLOW_CPU=1" in errors[0], out.stderr[-2000:]
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["accelerator.log", "devices.txt"]
  usage = subprocess.run(["bash", "tools/accelerator.sh"], cwd=REPO, env=env, capture_output=True, text=True)
  assert usage.returncode == 2 and "give the output folder" in usage.stderr


HLO = """HloModule jit_step

%fused_conv (p0: bf16[8,16,16,4], p1: bf16[3,3,4,8]) -> bf16[8,16,16,8] {
  %p0 = bf16[8,16,16,4]{3,2,1,0} parameter(0)
  %p1 = bf16[3,3,4,8]{3,2,1,0} parameter(1)
  ROOT %c = bf16[8,16,16,8]{3,2,1,0} convolution(%p0, %p1), window={size=3x3 pad=1_1x1_1}
}

%fused_reduce (q0: f32[8,256,8]) -> f32[8,8] {
  %q0 = f32[8,256,8]{2,1,0} parameter(0)
  %z = f32[] constant(0)
  ROOT %r = f32[8,8]{1,0} reduce(%q0, %z), dimensions={1}, to_apply=%add
}

%fused_exp (e0: f32[8,256,8]) -> f32[8,256,8] {
  %e0 = f32[8,256,8]{2,1,0} parameter(0)
  ROOT %ex = f32[8,256,8]{2,1,0} exponential(%e0)
}

%body (s: (s32[], f32[8,256,8])) -> (s32[], f32[8,256,8]) {
  %s = (s32[], f32[8,256,8]{2,1,0}) parameter(0)
  %g = f32[8,256,8]{2,1,0} get-tuple-element(%s), index=1
  %e = f32[8,256,8]{2,1,0} fusion(%g), kind=kLoop, calls=%fused_exp
  %i = s32[] get-tuple-element(%s), index=0
  ROOT %t = (s32[], f32[8,256,8]{2,1,0}) tuple(%i, %e)
}

ENTRY %main (x: bf16[8,16,16,4], w: bf16[3,3,4,8], y: f32[8,256,8]) -> (bf16[8,16,16,8], u8[0]) {
  %x = bf16[8,16,16,4]{3,2,1,0} parameter(0)
  %w = bf16[3,3,4,8]{3,2,1,0} parameter(1)
  %y = f32[8,256,8]{2,1,0} parameter(2)
  %cv = (bf16[8,16,16,8]{3,2,1,0}, u8[0]{0}) custom-call(%x, %w), custom_call_target="__cudnn$convForward"
  %fc = bf16[8,16,16,8]{3,2,1,0} fusion(%x, %w), kind=kOutput, calls=%fused_conv
  %rd = f32[8,8]{1,0} fusion(%y), kind=kInput, calls=%fused_reduce
  %ar = f32[8,8]{1,0} all-reduce(%rd), replica_groups={}, to_apply=%add
  %tr = f32[8,8,256]{2,1,0} transpose(%y), dimensions={0,2,1}
  %init = (s32[], f32[8,256,8]{2,1,0}) tuple(%ar, %y)
  %loop = (s32[], f32[8,256,8]) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  ROOT %out = (bf16[8,16,16,8]{3,2,1,0}, u8[0]{0}) tuple(%fc, %cv)
}
"""


def test_compile_only_reads_kernel_bytes_by_class_from_optimised_hlo():
  """benchmarks/compile_only.py's accounting on a hand-written optimised program: tuple types,
  cuDNN custom calls and fused convolutions count as matmul/conv, input fusions as reductions,
  a while body's kernels times its known trip count."""
  compile_only = load_script("benchmarks/compile_only.py", "timing")

  conv_in, weights, conv_out, y = 8 * 16 * 16 * 4 * 2, 3 * 3 * 4 * 8 * 2, 8 * 16 * 16 * 8 * 2, 8 * 256 * 8 * 4
  assert compile_only.type_bytes("(bf16[8,16,16,8]{3,2,1,0}, u8[0]{0})") == conv_out
  assert compile_only.type_bytes("pred[3]") == 3 and compile_only.type_bytes("f32[]") == 4
  got = compile_only.bytes_by_class(HLO)
  assert got["matmul/conv"] == 2 * (conv_in + weights + conv_out)
  assert got["reduction"] == y + 8 * 8 * 4
  assert got["collective"] == 2 * 8 * 8 * 4
  assert got["copy/transpose"] == 2 * y
  assert got["elementwise"] == 3 * 2 * y  # the loop body's fusion, three trips
  est = compile_only.roofline(1e12, got, peak=1e15, bandwidth=1e12, batch=8)
  assert est["lower_bound_s"] == max(1e-3, sum(got.values()) / 1e12)
  assert est["serial_estimate_s"] == 1e-3 + (sum(got.values()) - got["matmul/conv"]) / 1e12
  assert 0 < est["mfu_serial"] <= est["mfu_ceiling"] <= 1


def test_compile_only_compiles_the_tiny_train_step_for_the_cpu(tmp_path):
  """The script end to end on this machine's CPU (the accelerator targets need libtpu or the CUDA
  plugin, and minutes): one JSON record with FLOPs, memory and kernel bytes, and its report."""
  out = tmp_path / "compile.json"
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "benchmarks/compile_only.py", "--config", "tiny", "--batch", "4", "--target", "cpu"]
  run = subprocess.run([*cmd, "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-2000:]
  import json

  (record,) = json.loads(out.read_text())["results"]
  assert record["target"] == "cpu" and record["batch"] == 4 and record["dtype"] == "float32"
  assert record["flops"] > 1e5 and record["memory_bytes"] > 1e4 and record["flops_source"] == "compiled"
  assert record["bytes_by_class"]["matmul/conv"] > 0 and sum(record["bytes_by_class"].values()) > 1e5
  assert "FLOP per step" in run.stdout and "memory per chip" in run.stdout
  bad = subprocess.run([*cmd[:-2], "--target", "v9x"], cwd=REPO, env=env, capture_output=True, text=True)
  assert bad.returncode == 2 and "invalid choice: 'v9x'" in bad.stderr
  for args, message in (
    (["--config", "nope"], "--config 'nope': no configs/nope.py"),
    (["--set", "model.nope=1"], "--set 'model.nope=1': must be BLOCK.FIELD=VALUE"),
    (["--json", str(tmp_path / "missing" / "x.json")], "its folder does not exist"),
  ):
    bad = subprocess.run([*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True)
    errors = [line for line in bad.stderr.splitlines() if "error:" in line]
    assert bad.returncode == 2 and len(errors) == 1 and message in errors[0], bad.stderr[-2000:]
