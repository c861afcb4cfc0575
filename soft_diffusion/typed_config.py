"""Conversion of config blocks (ml_collections ConfigDict, Mapping or dataclass) into the frozen
dataclasses that the library takes, so that library code never reads a ConfigDict."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from soft_diffusion.errors import ConfigError

T = TypeVar("T")


def as_dict(cfg: Any) -> dict[str, Any]:
  """A plain dict from a config block: a Mapping, a dataclass, or anything with `to_dict()`."""
  if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
    return dataclasses.asdict(cfg)
  if hasattr(cfg, "to_dict"):
    return dict(cfg.to_dict())
  if isinstance(cfg, Mapping):
    return dict(cfg)
  raise ConfigError(f"config must be a dataclass, a Mapping or a ConfigDict, got {type(cfg).__name__}")


def from_block(cls: type[T], cfg: Any, block: str) -> T:
  """`cls(**fields of cfg)`; a key that `cls` lacks is an error naming `config.<block>.<key>`.

  Lists become tuples so the result stays hashable.
  """
  if isinstance(cfg, cls):
    return cfg
  values = as_dict(cfg)
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ConfigError(f"config.{block} has unknown field(s) {unknown}; allowed: {sorted(known)}")
  values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
  return cls(**values)


def check(ok: bool, field: str, allowed: str, value: Any) -> None:
  """Raises `ConfigError('config.<field> must be <allowed>, got <value>')` unless `ok`."""
  if not ok:
    raise ConfigError(f"config.{field} must be {allowed}, got {value!r}")


def is_int_at_least(value: Any, minimum: int) -> bool:
  """A real int (not a bool) >= minimum."""
  return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_positive_number(value: Any) -> bool:
  """A finite real number (int or float, not a bool) > 0."""
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
