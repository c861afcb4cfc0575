"""The config schema, written once: the typed blocks' dataclasses, their defaults and comments.

    from soft_diffusion.run import schema
    config = schema.default_config()                      # every field at its default (a ConfigDict)
    config = schema.load_config("configs/digits.py:paper")  # a config file, with its ':ARG'
    digits = schema.sibling(__file__, "digits")           # in a config: configs/digits.py beside it

    python -m soft_diffusion.run.schema              # every field: block.field = default  # comment
    python -m soft_diffusion.run.schema --markdown   # the same as tables (docs/config.md)

Each field is declared once, in its block's dataclass (settings.BLOCKS: data.DataConfig,
corruptions.CorruptionConfig and the program's blocks in settings.py; the model block is the
union of every network's config in models.NETWORKS, `name` the default network's), with its
default and a comment above or beside it; `default_config()` and `fields()` read them from there.

Config files live anywhere: they import the installed package (`from soft_diffusion.run import
schema`) and reach the configs beside them with `sibling`, so no folder has to be on sys.path.
The recipe helpers the shipped configs share (`use_soft_masks`, `apply_form`, `apply_ve_recipe`)
are here too.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import io
import os
import sys
import textwrap
import tokenize
import types
import typing
from typing import Any

import ml_collections

from soft_diffusion import errors, models
from soft_diffusion.run import settings

SEED = 0  # config.seed's default (Settings.seed is required: it has no dataclass default)


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field: `block` ('' for the top-level `seed`), its name, default, type and comment."""

  block: str
  name: str
  default: Any
  type: str
  comment: str

  @property
  def key(self) -> str:
    return f"{self.block}.{self.name}" if self.block else self.name


# ----------------------------------------------------------------------------------------------
# Reading the dataclasses.


@functools.cache
def _source_fields(cls: type) -> dict[str, tuple[str, str]]:
  """{field: (type text, comment)} of a dataclass, read from its source: the comment lines right
  above a field (no blank line between) and the comment beside it, joined."""
  source = textwrap.dedent(inspect.getsource(cls))
  above: dict[int, str] = {}  # line -> a comment alone on its line
  beside: dict[int, str] = {}  # line -> a comment after code
  code_lines: set[int] = set()
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    line = tok.start[0]
    if tok.type == tokenize.COMMENT:
      text = tok.string[1:].strip()
      (beside if line in code_lines else above)[line] = text
    elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
      code_lines.update(range(tok.start[0], tok.end[0] + 1))
  (node,) = ast.parse(source).body
  result = {}
  for stmt in node.body:
    if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
      continue
    lines = []
    line = stmt.lineno - 1
    while line in above:
      lines.insert(0, above[line])
      line -= 1
    lines += [beside[n] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in beside]
    result[stmt.target.id] = (ast.unparse(stmt.annotation), " ".join(lines))
  return result


def _doc(cls: type) -> str:
  """The first paragraph of a block dataclass's docstring, on one line."""
  doc = inspect.getdoc(cls) or ""
  return " ".join(doc.split("\n\n")[0].split())


def _default_network() -> type:
  """The config dataclass of the network that a model block without `name` gets."""
  return type(models.network_config({}))


def _networks() -> list[type]:
  """Every network's config dataclass, the default network's first."""
  first = _default_network()
  return [first, *(cls for cls, _ in models.NETWORKS.values() if cls is not first)]


def _default(field: dataclasses.Field) -> Any:
  return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _block_fields(block: str, cls: type) -> list[Field]:
  source = _source_fields(cls)
  return [Field(block, f.name, _default(f), *source[f.name]) for f in dataclasses.fields(cls)]


def _model_fields() -> list[Field]:
  """The model block: the union of every network's fields, in the order of their classes (a field
  of a later network goes right after the field it follows there); each field's default and
  comment from the first network (the default one first) that declares or documents it."""
  fields: list[Field] = []
  for cls in _networks():
    previous = None
    for field in _block_fields("model", cls):
      names = [f.name for f in fields]
      if field.name in names:
        i = names.index(field.name)
        if not fields[i].comment and field.comment:
          fields[i] = dataclasses.replace(fields[i], comment=field.comment)
      else:
        fields.insert(names.index(previous) + 1 if previous else len(fields), field)
      previous = field.name
  return fields


def blocks() -> dict[str, tuple[type, ...]]:
  """Config block -> the dataclass(es) that declare its fields, in the order of settings.Settings."""
  names = [f.name for f in dataclasses.fields(settings.Settings) if f.name != "seed"]
  return {b: tuple(_networks()) if b == "model" else (settings.BLOCKS[b],) for b in names}


def fields() -> list[Field]:
  """Every config field (`seed` first), with its default, type and comment."""
  seed_type, seed_comment = _source_fields(settings.Settings)["seed"]
  result = [Field("", "seed", SEED, seed_type, seed_comment)]
  for block, (cls, *_) in blocks().items():
    result += _model_fields() if block == "model" else _block_fields(block, cls)
  return result


def _placeholder_type(cls: type, name: str) -> type:
  """The type a None default's field holds otherwise (`int | None` -> int, `tuple[...] | None` -> tuple)."""
  hint = typing.get_type_hints(cls)[name]
  (kind,) = [a for a in typing.get_args(hint) if a is not type(None)]
  return typing.get_origin(kind) or kind


def _config_value(cls: type, field: Field) -> Any:
  if field.default is None:
    return ml_collections.config_dict.placeholder(_placeholder_type(cls, field.name))
  return field.default


def default_config() -> ml_collections.ConfigDict:
  """The config with every field at its default: `seed` and one block per dataclass, the model
  block holding every network's fields with `name` = the default network. None defaults are
  typed placeholders (`--config.data.crop_size=140` then parses as an int)."""
  config = ml_collections.ConfigDict()
  config.seed = SEED
  by_block: dict[str, list[Field]] = {}
  for field in fields()[1:]:
    by_block.setdefault(field.block, []).append(field)
  for block, classes in blocks().items():
    config[block] = ml_collections.ConfigDict()
    for field in by_block[block]:
      cls = next(c for c in classes if field.name in {f.name for f in dataclasses.fields(c)})
      config[block][field.name] = _config_value(cls, field)
  return config


# ----------------------------------------------------------------------------------------------
# Config files, by path.


def _split(spec: str) -> tuple[str, str | None]:
  """'FILE.py:ARG' -> (FILE.py, ARG); 'FILE.py' -> (FILE.py, None)."""
  file, colon, arg = spec.partition(":")
  return (file, arg) if colon and file.endswith(".py") else (spec, None)


def _module_name(path: str, name: str) -> str:
  digest = hashlib.sha1(os.path.dirname(path).encode()).hexdigest()[:12]
  return f"_soft_diffusion_config_{digest}_{name}"


def _exec(path: str, module_name: str, register: bool) -> types.ModuleType:
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  if register:  # before it runs, so that siblings that load each other find it
    sys.modules[module_name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    if register:
      sys.modules.pop(module_name, None)
    raise
  return module


def load_config(spec: str, *, label: str = "config") -> ml_collections.ConfigDict:
  """The config of a config file: `'path/to/file.py'` or `'path/to/file.py:ARG'` (get_config(ARG)).

  The file is loaded by path (sys.path is not touched), so it may live anywhere. Errors begin
  with `label` and the spec (the command line passes '--config').
  Raises:
    errors.MissingError: no such file.
    errors.ConfigError: the file defines no get_config, or it fails or returns no ConfigDict (one line).
  """
  file, arg = _split(spec)
  if not os.path.isfile(file):
    raise errors.MissingError(f"{label} {file}: no such file")
  path = os.path.abspath(file)
  try:
    module = _exec(path, _module_name(path, "load_config_" + os.path.basename(path)[:-3]), register=False)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
      raise errors.ConfigError(f"{label} {spec}: the file defines no get_config()")
    config = get_config() if arg is None else get_config(arg)
  except errors.UserError:
    raise
  except SyntaxError as e:
    raise errors.ConfigError(f"{label} {spec}: SyntaxError: {e.msg} (line {e.lineno})") from e
  except Exception as e:  # the file is the user's own code: whatever it raises is theirs to fix
    raise errors.ConfigError(f"{label} {spec}: {type(e).__name__}: {errors.one_line(e)}") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise errors.ConfigError(
      f"{label} {spec}: get_config() must return an ml_collections.ConfigDict, got {type(config).__name__}"
    )
  return config


def sibling(anchor_file: str, name: str) -> types.ModuleType:
  """The module `name`.py from the folder of `anchor_file` (a config's `__file__`), loaded by
  path once and cached in sys.modules under a private name, so configs build on each other
  (`digits = schema.sibling(__file__, "digits")`) without their folder on sys.path.
  Raises:
    errors.MissingError: no such file (one line, naming the file looked for).
  """
  name = name.removesuffix(".py")
  path = os.path.join(os.path.dirname(os.path.abspath(anchor_file)), f"{name}.py")
  if not os.path.isfile(path):
    raise errors.MissingError(f"config {anchor_file} builds on {path}: no such file")
  module_name = _module_name(path, name)
  module = sys.modules.get(module_name)
  if module is None or getattr(module, "__file__", None) != path:
    module = _exec(path, module_name, register=True)
  return module


# ----------------------------------------------------------------------------------------------
# Recipes the shipped configs share (configs/default.py re-exports them for older configs).


def use_soft_masks(config):
  """Switches `config` to the soft masking corruption (a central square growing with t, ramp
  0.25) in place, as configs/celeba64_mask.py and configs/digits_mask.py do; returns it."""
  config.corruption.name = "mask"
  config.corruption.blur_schedule = "log"  # no blur here; 'selected' applies to blur only
  config.corruption.mask_order = "center"
  config.corruption.mask_ramp_width = 0.25
  return config


# The recipes (parameterisation, loss, training-time density) a config can be loaded with:
# `--config configs/FILE.py:FORM` passes FORM to the file's get_config (docs/results.md, "Training
# that learns what the samplers read", measured them). Blur configs take 'preconditioned' or
# 'paper', the VE configs 'edm' or 'score_sde'; the mask configs are the paper's form (the
# preconditioning needs a corruption diagonal in the DCT basis).
BLUR_FORMS = ("preconditioned", "paper")
VE_FORMS = ("edm", "score_sde")


def apply_form(config, form: str, allowed=BLUR_FORMS):
  """Sets `config`'s recipe to `form` in place (one of `allowed`) and returns it:

  * 'paper': the paper's residual form h = x_t + φ with the loss weight c_t² (model.precond =
    'none'), t ~ U(t_min, 1) and each sampler's own end (sample.final = 'auto');
  * 'preconditioned': the per-coefficient preconditioning with the data's spectrum and its loss
    (model.precond = 'spectral', c_in scalar; docs/method.md §2.4), t ~ U(t_min, 1), and samplers
    that end with the denoised estimate (sample.final = 'denoise');
  * 'score_sde' (C_t = I): score_sde's VE recipe, σ²-weighted loss and the output scaled by s_t;
  * 'edm' (C_t = I): EDM's, the preconditioning (with the data's spectrum in place of one σ_data),
    the log-normal training-time density (docs/method.md §2.5) and the denoised end.
  """
  if form not in allowed:
    raise ValueError(f"the config's form (the ':FORM' after the file name) must be one of {allowed}, got {form!r}")
  config.loss.floor = 0.0
  config.loss.lag = 0.0
  config.model.skip = "identity"
  config.model.precond_c_in = "scalar"
  config.model.precond_spectrum = "data"
  spectral = form in ("preconditioned", "edm")
  config.model.precond = "spectral" if spectral else "none"
  config.loss.weighting = "inverse_noise_var" if form == "score_sde" else "uniform"
  config.model.output_scale = "noise_std" if form == "score_sde" else "none"
  config.train.t_density = "lognormal" if form == "edm" else "uniform"
  # the sampler's end: the preconditioned forms end with the last step's estimate x̂_0, the paper's
  # and score_sde's with each sampler's own ('noise' for Momentum, 'denoise' for PC)
  config.sample.final = "denoise" if spectral else "auto"
  return config


def apply_ve_recipe(config, noise_std_max: float):
  """score_sde's VE recipe in our units on any config (also used by the VE twins of the small
  studies): C_t = I, geometric s_t from 0.02 to `noise_std_max`, inverse-noise-variance
  weighting, the network's output scaled by s_t, and the PC sampler (with `multistep`, its
  order-2 step in DPM-Solver++(2M)'s midpoint form, measured best for C_t = I: docs/results.md,
  "Ten steps and fewer")."""
  config.corruption.name = "identity"
  config.corruption.blur_schedule = "log"  # no blur here; 'selected' applies to blur only
  config.corruption.blur_sigma_table = None
  config.corruption.noise_schedule = "geometric"
  config.corruption.noise_std_min = 0.02
  config.corruption.noise_std_max = noise_std_max
  config.loss.weighting = "inverse_noise_var"
  config.model.output_scale = "noise_std"
  config.sample.sampler = "pc"
  config.sample.form = "midpoint"
  return config


# ----------------------------------------------------------------------------------------------
# The reference: `python -m soft_diffusion.run.schema [--markdown]`.


def text() -> str:
  """Every field as `block.field = default  # comment`, one a line."""
  return "\n".join(f"{f.key} = {repr(f.default)}  # {f.comment}" for f in fields()) + "\n"


def markdown() -> str:
  """Every field as a table per block (docs/config.md)."""
  cell = lambda s: s.replace("|", "\\|")  # noqa: E731
  by_block: dict[str, list[Field]] = {}
  for field in fields():
    by_block.setdefault(field.block, []).append(field)
  out = ["| field | default | meaning |", "|---|---|---|"]
  out += [f"| `{f.key}` | `{cell(repr(f.default))}` | {cell(f.comment)} |" for f in by_block.pop("")]
  for block, classes in blocks().items():
    doc = _doc(classes[0])
    if block == "model":
      doc = (
        "The network φ_θ that `model.name` picks, typed by that network's config "
        "dataclass; the block holds the fields of every network (a field only another network reads "
        f"must keep its default). {doc}"
      )
    cls_names = ", ".join(f"`{c.__module__}.{c.__name__}`" for c in classes)
    out += ["", f"### {block}", "", f"{doc} Declared in {cls_names}.", ""]
    out += ["| field | default | meaning |", "|---|---|---|"]
    out += [f"| `{f.name}` | `{cell(repr(f.default))}` | {cell(f.comment)} |" for f in by_block[block]]
  return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description="Every config field: its default and what it means.")
  parser.add_argument("--markdown", action="store_true", help="tables per block, as docs/config.md has them")
  args = parser.parse_args(argv)
  sys.stdout.write(markdown() if args.markdown else text())
  return 0


if __name__ == "__main__":
  sys.exit(main())
