"""The package's import graph: two parts with arrows one way. The library (everything outside
`soft_diffusion.run`) never imports the program (`soft_diffusion.run`: flags, files, devices,
modes); inside the program each module imports only layers below its own; nothing imports in a
cycle (every import counts, also those inside functions). The layers are the ones
docs/contributing.md's code map states."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "soft_diffusion"
PROGRAM = "soft_diffusion.run"

# The program's layers, lowest first (names under soft_diffusion.run).
PROGRAM_LAYERS = (
  ("files", "reporting", "preemption", "settings"),
  ("processes", "image_files", "workdir", "schema"),
  ("points", "state", "figures"),
  ("checkpoints",),
  ("modes.levels",),
  ("modes.sample",),
  ("modes.evaluate_fid", "modes.evaluate_exact", "modes.restore", "modes.tune_grid"),
  ("modes.evaluate", "modes.train"),
  ("main",),
  ("__main__",),
)
LAYER = {f"{PROGRAM}.{name}": i + 1 for i, names in enumerate(PROGRAM_LAYERS) for name in names}


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


def in_program(module: str) -> bool:
  return module == PROGRAM or module.startswith(PROGRAM + ".")


def test_every_program_module_has_a_layer():
  graph = import_graph()
  program = {m for m in graph if in_program(m)} - {PROGRAM, f"{PROGRAM}.modes"}  # the packages: docstrings only
  assert program == set(LAYER), sorted(program ^ set(LAYER))


def test_the_library_is_what_it_was():
  """What is not the program is pure library code: no files, flags or config objects."""
  top_level = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
  assert top_level == {
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
    "grid_tuning",
    "main",  # `python -m soft_diffusion.main`: runs soft_diffusion.run.main, imports nothing else
  }, sorted(top_level)


def test_the_library_never_imports_the_program():
  graph = import_graph()
  upward = sorted(
    f"{a} imports {b}"
    for a, targets in graph.items()
    if not in_program(a) and a != "soft_diffusion.main"
    for b in targets
    if in_program(b)
  )
  assert not upward, "\n".join(upward)


def test_program_imports_go_downward_only():
  upward = [
    f"{a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]})"
    for a, targets in import_graph().items()
    if a in LAYER
    for b in targets
    if b in LAYER and LAYER[b] >= LAYER[a]
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
