"""The package's import graph: the library never imports a driver, drivers import only layers
below their own, and nothing imports in a cycle (every import counts, also those inside
functions). The layers are the ones docs/contributing.md's code map states."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "soft_diffusion"

# Driver layers, lowest first; everything else in the package is the library (layer 0).
DRIVER_LAYERS = (
  ("settings", "artifacts", "preemption"),
  ("state", "figures"),
  ("checkpoints", "levels"),
  ("sample",),
  ("evaluate_fid", "evaluate_exact", "restore"),
  ("evaluate", "train"),
  ("main",),
)
LAYER = {name: i + 1 for i, names in enumerate(DRIVER_LAYERS) for name in names}


def module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
  modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
  graph: dict[str, set[str]] = {m: set() for m in modules}
  for name, path in modules.items():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("soft_diffusion"):
        for alias in node.names:
          target = f"{node.module}.{alias.name}"
          graph[name].add(target if target in modules else node.module)
      elif isinstance(node, ast.Import):
        graph[name].update(a.name for a in node.names if a.name.startswith("soft_diffusion"))
    graph[name].discard(name)
  return graph


def layer(module: str) -> int:
  """0 for the library; the driver's layer for soft_diffusion.<driver>."""
  parts = module.split(".")
  return LAYER.get(parts[1], 0) if len(parts) == 2 else 0


def test_every_driver_has_a_layer():
  top_level = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
  library = top_level - set(LAYER)
  # What is not a driver must be pure library code: no files, flags or config objects.
  assert library == {
    "dct",
    "errors",
    "typed_config",
    "schedules",
    "time_grids",
    "level_selection",
    "losses",
    "multistep",
    "preconditioning",
    "samplers",
    "priors",
    "restoration",
    "gaussian_field",
  }, sorted(library)


def test_imports_go_downward_only():
  upward = [
    f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
    for a, targets in import_graph().items()
    for b in targets
    if b != "soft_diffusion" and layer(b) > 0 and layer(b) >= layer(a)
  ]
  assert not upward, "\n".join(sorted(upward))


def test_no_import_cycle():
  graph = import_graph()
  state: dict[str, int] = {}  # 1 on the current path, 2 done
  path: list[str] = []

  def visit(node: str) -> None:
    state[node] = 1
    path.append(node)
    for target in sorted(graph.get(node, ())):
      if target == "soft_diffusion" or target not in graph:
        continue
      if state.get(target) == 1:
        raise AssertionError("import cycle: " + " -> ".join(path[path.index(target) :] + [target]))
      if target not in state:
        visit(target)
    path.pop()
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node)
