"""What a train step will cost on an accelerator that is not here: compile it for the target and read XLA.

    V=$(python -c 'import jax; print(jax.__version__)')   # the compilers at the installed jax's version:
    pip install "jax[tpu]==$V" "jax-cuda12-plugin==$V" "jax-cuda12-pjrt==$V"   # no chip, no CUDA needed
    JAX_PLATFORMS=cpu python benchmarks/compile_only.py --config celeba64 --batch 128 --target h100 v5e
    python benchmarks/compile_only.py --config tiny --batch 8 --target cpu --json OUT.json   # the CPU: parsing only

JAX compiles for a chip it does not have when given the chip's description: TPU topologies come
from libtpu (`jax.experimental.topologies.get_topology_desc('v5e:2x2', 'tpu')`), an H100 from
the CUDA plugin and a device description (benchmarks/h100_sxm.txtpb, written from NVIDIA's
datasheet). For each target the script compiles `train.make_train_step` of the config, on one
chip, at the per-chip batch `--batch`, in the config's compute dtype (model.dtype 'auto' is
bfloat16 on a GPU or TPU), and prints and writes:

- compile seconds on this machine (a 2-core CPU is far slower than an accelerator host);
- memory per chip by XLA's memory analysis (arguments + outputs + temporaries − donated buffers),
  against the chip's HBM, so a user picks the largest batch that fits;
- FLOPs per step (XLA's cost analysis of the compiled step; where it returns None, as the CUDA
  compiler does, the lowered program's count) and per image;
- bytes moved by each kernel of the optimised program, by class (matmul/conv kernels, reductions
  such as normalisation, elementwise fusions, copies and transposes, collectives, other), summed
  from the kernels' operand and result sizes;
- the roofline, stated as estimates: a lower bound max(FLOPs / peak, bytes / bandwidth), and a
  serial estimate FLOPs / peak + (bytes outside matmul/conv kernels) / bandwidth, which assumes
  the matmuls compute-bound and every other kernel memory-bound, and the same at 70% of the peak
  and 80% of the bandwidth (what tuned kernels typically reach: an assumption); the MFU each
  implies and the images/s they give.

These are XLA's counts and datasheet peaks, not measurements: a real step adds launch overhead,
imperfect overlap and the input pipeline; multi-chip data parallelism adds the gradient all-reduce
(excluded here: one chip). docs/benchmarks.md lists what it printed here and what a chip measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent

# Datasheet figures per chip: dense bf16 FLOP/s, HBM bytes/s, HBM bytes.
CHIPS = {
  "h100": {"topology": "1x1x1", "platform": "cuda", "peak": 989e12, "bandwidth": 3.35e12, "memory": 80e9},
  "v4": {"topology": "v4:2x2x1", "platform": "tpu", "peak": 275e12, "bandwidth": 1.2e12, "memory": 32e9},
  "v5e": {"topology": "v5e:2x2", "platform": "tpu", "peak": 197e12, "bandwidth": 0.819e12, "memory": 16e9},
  "v5p": {"topology": "v5p:2x2x1", "platform": "tpu", "peak": 459e12, "bandwidth": 2.765e12, "memory": 95e9},
  "v6e": {"topology": "v6e:2x2", "platform": "tpu", "peak": 918e12, "bandwidth": 1.64e12, "memory": 32e9},
  # This machine: no roofline (its peaks are not datasheet numbers); used to test the parsing.
  "cpu": {"topology": None, "platform": "cpu", "peak": None, "bandwidth": None, "memory": None},
}
CLASSES = ("matmul/conv", "reduction", "elementwise", "copy/transpose", "collective", "other")

_ARRAY = re.compile(r"\b(pred|[suf]\d+|bf16|c64|c128|f8e\w+)\[([\d,]*)\]")
_ITEMSIZE = {"pred": 1, "bf16": 2, "c64": 8, "c128": 16}
_SKIP = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all", "partition-id", "replica-id"}
_COLLECTIVE = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def type_bytes(text: str) -> int:
  """Bytes of an HLO type: one array (`bf16[8,16]{1,0}`) or a tuple of them."""
  total = 0
  for dtype, dims in _ARRAY.findall(text):
    size = _ITEMSIZE.get(dtype) or max(1, int(re.sub(r"\D", "", dtype) or 8) // 8)
    total += size * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
  return total


def _closing(text: str, start: int) -> int:
  """Index of the parenthesis that closes the one at text[start]."""
  depth = 0
  for i in range(start, len(text)):
    depth += {"(": 1, ")": -1}.get(text[i], 0)
    if depth == 0:
      return i
  return len(text)


@dataclasses.dataclass
class Instruction:
  name: str
  type: str
  op: str
  operands: list[str]
  attributes: str


def parse_hlo(text: str) -> tuple[dict[str, list[Instruction]], str]:
  """Computations of an HLO module's text: {name: instructions}, and the entry's name."""
  computations: dict[str, list[Instruction]] = {}
  entry, current = "", None
  for line in text.splitlines():
    head = re.match(r"^(ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$", line)
    if head:
      current = computations.setdefault(head[2], [])
      entry = head[2] if head[1] else entry
      continue
    if line.startswith("}"):
      current = None
      continue
    found = re.match(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*", line)
    if current is None or not found:
      continue
    rest = line[found.end() :]
    if rest.startswith("("):  # a tuple type
      end = _closing(rest, 0) + 1
      type_text, rest = rest[:end], rest[end:].lstrip()
    else:
      type_text, _, rest = rest.partition(" ")
    op = re.match(r"([\w\-$]+)\(", rest)
    if not op:
      continue
    close = _closing(rest, op.end() - 1)
    operands = re.findall(r"%([\w.\-]+)", rest[op.end() : close])
    current.append(Instruction(found[1], type_text, op[1], operands, rest[close + 1 :]))
  return computations, entry


def _called(attributes: str, key: str) -> list[str]:
  found = re.search(key + r"=\{?(%[\w.\-]+(?:,\s*%[\w.\-]+)*)\}?", attributes)
  return re.findall(r"%([\w.\-]+)", found[1]) if found else []


def kernel_class(inst: Instruction, computations: dict[str, list[Instruction]]) -> str:
  """The class of one top-level instruction of an optimised program (see the module doc)."""
  if inst.op in ("convolution", "dot"):
    return "matmul/conv"
  if inst.op == "custom-call":
    target = re.search(r'custom_call_target="([^"]+)"', inst.attributes)
    target = target[1].lower() if target else ""
    return "matmul/conv" if any(k in target for k in ("conv", "gemm", "matmul", "dot")) else "other"
  if inst.op == "fusion":
    body = [i.op for c in _called(inst.attributes, "calls") for i in computations.get(c, [])]
    if "convolution" in body or "dot" in body:
      return "matmul/conv"
    if any(op.startswith(_COLLECTIVE) for op in body):
      return "collective"
    kind = re.search(r"kind=(k\w+)", inst.attributes)
    if "reduce" in body or "reduce-window" in body or (kind and kind[1] == "kInput"):
      return "reduction"
    if set(body) <= {"parameter", "transpose", "copy", "bitcast", "reshape", "broadcast"}:
      return "copy/transpose"
    return "elementwise"
  if inst.op.startswith(_COLLECTIVE):
    return "collective"
  if inst.op in ("copy", "transpose", "copy-start", "copy-done", "dynamic-slice", "dynamic-update-slice"):
    return "copy/transpose"
  if inst.op in ("reduce", "reduce-window", "select-and-scatter"):
    return "reduction"
  return "elementwise" if inst.op in ("add", "multiply", "subtract", "divide", "select", "convert") else "other"


def bytes_by_class(hlo_text: str, by_op: dict[str, float] | None = None) -> dict[str, float]:
  """Bytes each class of kernel reads and writes in one call of an optimised program: every
  top-level instruction of the entry computation (and of the bodies of while loops, times their
  known trip count), its operands' and its result's sizes. An upper bound on the traffic: a
  kernel that reads part of an operand (a slice) or updates it in place is charged all of it.
  `by_op`, when given, receives the bytes of the 'other' class per HLO op name."""
  computations, entry = parse_hlo(hlo_text)
  totals = dict.fromkeys(CLASSES, 0.0)

  def walk(name: str, times: float) -> None:
    instructions = computations.get(name, [])
    sizes = {i.name: type_bytes(i.type) for i in instructions}
    for inst in instructions:
      if inst.op in _SKIP:
        continue
      if inst.op in ("while", "call", "conditional", "async-start"):
        trips = re.search(r'"n":"(\d+)"', inst.attributes)
        for body in _called(inst.attributes, "body") + _called(inst.attributes, "to_apply"):
          walk(body, times * (int(trips[1]) if trips and inst.op == "while" else 1))
        continue
      moved = type_bytes(inst.type) + sum(sizes.get(o, 0) for o in inst.operands)
      kind = kernel_class(inst, computations)
      totals[kind] += times * moved
      if kind == "other" and by_op is not None:
        by_op[inst.op] = by_op.get(inst.op, 0.0) + times * moved

  walk(entry, 1.0)
  return totals


# The share of the datasheet rates that tuned kernels typically reach (large bf16 matmuls and
# convolutions; streaming elementwise kernels): an assumption, for the "achievable" estimate.
ACHIEVABLE = {"compute": 0.7, "bandwidth": 0.8}


def roofline(flops: float, classes: dict[str, float], peak: float, bandwidth: float, batch: int) -> dict:
  """The step-time estimates of the module doc, with the MFU ceilings and images/s they give; the
  'achievable' one is the serial estimate at ACHIEVABLE's shares of the datasheet rates."""
  total = sum(classes.values())
  compute = flops / peak
  bound = max(compute, total / bandwidth)
  serial = compute + (total - classes["matmul/conv"]) / bandwidth
  achievable = compute / ACHIEVABLE["compute"] + (total - classes["matmul/conv"]) / bandwidth / ACHIEVABLE["bandwidth"]
  return {
    "achievable_s": achievable,
    "mfu_achievable": compute / achievable,
    "images_per_s_achievable": batch / achievable,
    "compute_s": compute,
    "memory_s": total / bandwidth,
    "lower_bound_s": bound,
    "serial_estimate_s": serial,
    "mfu_ceiling": compute / bound,
    "mfu_serial": compute / serial,
    "images_per_s_bound": batch / bound,
    "images_per_s_serial": batch / serial,
  }


def devices_for(target: str):
  """One chip of the target, as a compile-only device (the CPU's first device for 'cpu')."""
  import jax
  from jax.experimental import topologies

  chip = CHIPS[target]
  if chip["platform"] == "cpu":
    return jax.devices("cpu")[:1]
  if chip["platform"] == "tpu":
    return topologies.get_topology_desc(chip["topology"], "tpu").devices[:1]
  description = (HERE / "h100_sxm.txtpb").read_text()
  return topologies.get_topology_desc(platform="cuda", topology=chip["topology"], target_config=description).devices[:1]


def load_config(spec: str, batch: int, dtype: str | None, overrides: list[str]):
  """Config `name[@form]` from configs/, with the per-chip batch, the dtype and key=value overrides;
  ValueError (one line, naming the argument) for a config or override that does not exist."""
  name, _, form = spec.partition("@")
  if not (HERE.parent / "configs" / f"{name}.py").is_file():
    configs = sorted(p.stem for p in (HERE.parent / "configs").glob("*.py") if p.stem != "__init__")
    raise ValueError(f"--config {spec!r}: no configs/{name}.py; one of {configs}, optionally NAME@FORM")
  from soft_diffusion.run import schema

  config = schema.load_config(str(HERE.parent / "configs" / f"{name}.py") + (f":{form}" if form else ""))
  config.train.batch_size = batch
  if dtype:
    config.model.dtype = dtype
  for item in overrides:
    key, eq, value = item.partition("=")
    block, _, field = key.partition(".")
    if not eq or block not in config or field not in config[block]:
      raise ValueError(f"--set {item!r}: must be BLOCK.FIELD=VALUE with a field of the config (e.g. model.remat=True)")
    old = config[block][field]
    try:
      config[block][field] = (
        (value == "True") if isinstance(old, bool) else type(old)(value) if old is not None else value
      )
    except (TypeError, ValueError):
      raise ValueError(f"--set {item!r}: {value!r} is not a {type(old).__name__}") from None
  return config


def compile_step(config, target: str, hlo_dir: pathlib.Path | None = None) -> dict:
  """Compiles the train step of `config` for one chip of `target`; XLA's numbers for it."""
  import jax
  from jax.sharding import Mesh
  from timing import corruption_for_timing, preconditioner_for_timing, total_flops

  from soft_diffusion import models, preconditioning
  from soft_diffusion.run import settings as settings_lib
  from soft_diffusion.run import state as state_lib
  from soft_diffusion.run.modes import train

  settings = settings_lib.load(config)
  platform = CHIPS[target]["platform"]
  backend = {"cuda": "gpu"}.get(platform, platform)  # model.dtype 'auto' by backend
  size = settings.data.image_size
  channels = 1 if settings.data.name == "digits" else 3
  network = models.make_network(settings.model, backend=backend)
  optimizer, lr_schedule = state_lib.make_optimizer(settings.optim)
  corruption = corruption_for_timing(settings.corruption)
  precond = preconditioner_for_timing(settings, corruption, (size, size, channels))
  power = np.ones((size, size, channels), np.float32)  # a step's cost does not depend on the spectrum
  t_sampler = None
  if settings.train.t_density == "lognormal":
    t_sampler = preconditioning.lognormal_time_sampler(
      corruption,
      power,
      mean=settings.train.t_lognormal_mean,
      std=settings.train.t_lognormal_std,
      t_min=settings.train.t_min,
    )

  def lower(devices):
    mesh = Mesh(np.array(devices), ("data",))
    state = state_lib.abstract_state(
      network, optimizer, (size, size, channels), settings.seed, state_lib.replicated(mesh)
    )
    batch = jax.ShapeDtypeStruct(
      (settings.train.batch_size, size, size, channels), np.float32, sharding=state_lib.batch_sharding(mesh)
    )
    step = train.jit_train_step(
      network, corruption, optimizer, lr_schedule, settings, state, mesh, precond=precond, t_sampler=t_sampler
    )
    return step.lower(state, batch), state, mesh

  start = time.perf_counter()
  lowered, state, mesh = lower(devices_for(target))
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  flops, source = total_flops(compiled), "compiled"
  if not np.isfinite(flops):  # no cost analysis for this target (CUDA): the program's count before
    cpu_cost = lower(jax.devices("cpu")[:1])[0].cost_analysis()  # optimisation, lowered for the CPU
    flops, source = float(cpu_cost["flops"]), "lowered"
  stats = compiled.memory_analysis()
  memory = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
  memory -= stats.alias_size_in_bytes
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  hlo = compiled.as_text()
  if hlo_dir is not None:
    hlo_dir.mkdir(parents=True, exist_ok=True)
    (hlo_dir / f"{target}_b{settings.train.batch_size}.hlo.txt").write_text(hlo)
  other: dict[str, float] = {}
  classes = bytes_by_class(hlo, other)
  return {
    "device_kind": mesh.devices.flat[0].device_kind,
    "compile_s": seconds,
    "memory_bytes": int(memory),
    "flops": flops,
    "flops_source": source,
    "xla_bytes_accessed": float(cost["bytes accessed"]) if cost and "bytes accessed" in cost else None,
    "bytes_by_class": classes,
    "other_bytes_by_op": dict(sorted(other.items(), key=lambda kv: -kv[1])[:8]),
    "xla_cost": {k: float(v) for k, v in (cost or {}).items() if "{" not in k},
    "dtype": models.resolve_dtype(settings.model.dtype, backend),
    "params": int(sum(np.prod(a.shape) for a in jax.tree.leaves(state.params))),
  }


def report(result: dict) -> list[str]:
  """The printed lines of one target's result."""
  r, chip = result, CHIPS[result["target"]]
  gb = 1e9

  def size(n: float) -> str:
    return f"{n / gb:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"

  lines = [
    f"{r['config']} on {r['target']} ({r['device_kind']}), batch {r['batch']} per chip, {r['dtype']}: "
    f"compiled in {r['compile_s']:.0f} s here; {r['params'] / 1e6:.2f}M parameters",
    f"  memory per chip {size(r['memory_bytes'])}" + (f" of {chip['memory'] / gb:.0f} GB" if chip["memory"] else ""),
    f"  {r['flops']:.4g} FLOP per step ({r['flops_source']} program), "
    f"{r['flops'] / r['batch'] / 1e9:.1f} GFLOP per image",
    "  bytes by kernel class: "
    + ", ".join(f"{k} {size(v)}" for k, v in r["bytes_by_class"].items() if v)
    + f" (total {size(sum(r['bytes_by_class'].values()))}"
    + (f"; XLA's cost analysis: {size(r['xla_bytes_accessed'])})" if r["xla_bytes_accessed"] else ")"),
  ]
  if "roofline" in r:
    f = r["roofline"]
    lines.append(
      f"  estimate (datasheet {chip['peak'] / 1e12:.0f} TFLOP/s, {chip['bandwidth'] / 1e12:.2f} TB/s): step "
      f"{f['lower_bound_s'] * 1e3:.1f}–{f['serial_estimate_s'] * 1e3:.1f} ms, MFU ≤ {f['mfu_ceiling']:.2f} "
      f"(serial {f['mfu_serial']:.2f}), {f['images_per_s_serial']:.0f}–{f['images_per_s_bound']:.0f} images/s per chip"
    )
    lines.append(
      f"  at {ACHIEVABLE['compute']:.0%} of that FLOP/s and {ACHIEVABLE['bandwidth']:.0%} of that bandwidth (typical "
      f"of tuned kernels, assumed): step {f['achievable_s'] * 1e3:.1f} ms, MFU {f['mfu_achievable']:.2f}, "
      f"{f['images_per_s_achievable']:.0f} images/s per chip"
    )
  return lines


def tables(path: pathlib.Path) -> str:
  """The markdown table of a results JSON (docs/benchmarks.md), rooflines recomputed from its counts."""
  payload = json.loads(path.read_text())
  lines = [
    f"Compiled here with jax {payload['jax']} for one chip of each target (estimates from XLA's counts and "
    "datasheet rates, not measurements)",
    "",
    "| config | target | batch/chip | compile s (here) | memory/chip | GFLOP/image | GB moved: matmul/conv, "
    "reduction, elementwise, copy, other (total; XLA's own count) | step ms: bound, serial, achievable | "
    "MFU: bound, serial, achievable | "
    "images/s/chip (achievable) |",
    "|---|---|---:|---:|---:|---:|---|---|---|---:|",
  ]
  for r in payload["results"]:
    chip = payload["chips"][r["target"]]
    f = roofline(r["flops"], r["bytes_by_class"], chip["peak"], chip["bandwidth"], r["batch"])
    moved = ", ".join(f"{r['bytes_by_class'][k] / 1e9:.1f}" for k in (*CLASSES[:4], "other"))
    total = sum(r["bytes_by_class"].values()) / 1e9
    xla = f"; XLA {r['xla_bytes_accessed'] / 1e9:.1f}" if r.get("xla_bytes_accessed") else ""
    moved += f" ({total:.1f}{xla})"
    flag = f" ({', '.join(r['xla_flags'])})" if r.get("xla_flags") else ""
    lines.append(
      f"| {r['config']} | {r['target']}{flag} | {r['batch']} | {r['compile_s']:.0f} | "
      f"{r['memory_bytes'] / 1e9:.1f} of {chip['memory'] / 1e9:.0f} GB | {r['flops'] / r['batch'] / 1e9:.1f} | "
      f"{moved} | {f['lower_bound_s'] * 1e3:.1f}, {f['serial_estimate_s'] * 1e3:.1f}, {f['achievable_s'] * 1e3:.1f} | "
      f"{f['mfu_ceiling']:.2f}, {f['mfu_serial']:.2f}, {f['mfu_achievable']:.2f} | {f['images_per_s_achievable']:.0f} |"
    )
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--tables", type=pathlib.Path, default=None, help="print the table of a results JSON; compile nothing"
  )
  parser.add_argument("--config", default="celeba64", help="a config in configs/, optionally NAME@FORM")
  parser.add_argument("--batch", type=int, nargs="+", default=[128], help="per-chip batch sizes")
  parser.add_argument("--target", nargs="+", default=["h100"], choices=sorted(CHIPS))
  parser.add_argument("--dtype", choices=["float32", "bfloat16", "auto"], default=None, help="default: the config's")
  parser.add_argument("--set", nargs="*", default=[], metavar="BLOCK.FIELD=VALUE", help="config overrides")
  parser.add_argument("--json", type=pathlib.Path, default=None, help="append the results to this JSON file")
  parser.add_argument(
    "--hlo_dir", type=pathlib.Path, default=None, help="also write each optimised program's text here"
  )
  args = parser.parse_args()
  if args.tables:
    if not args.tables.is_file():
      parser.error(f"--tables {args.tables}: no such file")
    print(tables(args.tables))
    return
  if any(b < 1 for b in args.batch):
    parser.error("--batch: positive sizes only")
  if args.json and not args.json.parent.is_dir():
    parser.error(f"--json {args.json}: its folder does not exist")
  from soft_diffusion import errors
  from soft_diffusion.run import settings as settings_lib

  try:  # every config is checked before anything is compiled
    for batch in args.batch:
      settings_lib.load(load_config(args.config, batch, args.dtype, args.set))
  except (ValueError, errors.ConfigError) as e:
    parser.error(str(e).splitlines()[0])
  if any(CHIPS[t]["platform"] == "cuda" for t in args.target):
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # the CUDA compiler, no CUDA runtime
  import jax

  print(f"jax {jax.__version__}, compiling on {jax.default_backend()}", file=sys.stderr, flush=True)
  records = json.loads(args.json.read_text())["results"] if args.json and args.json.exists() else []
  for target in args.target:
    for batch in args.batch:
      print(f"{args.config} on {target}, batch {batch}: compiling ...", file=sys.stderr, flush=True)
      try:
        result = compile_step(load_config(args.config, batch, args.dtype, args.set), target, args.hlo_dir)
      except (RuntimeError, NotImplementedError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"compile_only.py: {target}: {first[:300]}", file=sys.stderr)
        continue
      flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.startswith("--xla_")]
      result = {
        "config": args.config,
        "target": target,
        "batch": batch,
        "overrides": args.set,
        "xla_flags": flags,
        **result,
      }
      chip = CHIPS[target]
      if chip["peak"]:
        result["roofline"] = roofline(result["flops"], result["bytes_by_class"], chip["peak"], chip["bandwidth"], batch)
      print("\n".join(report(result)), flush=True)
      records = [
        r
        for r in records
        if (r["config"], r["target"], r["batch"], r["overrides"]) != (args.config, target, batch, args.set)
      ]
      records.append(result)
      if args.json:
        payload = {"jax": jax.__version__, "chips": {k: v for k, v in CHIPS.items() if k != "cpu"}, "results": records}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
  main()
