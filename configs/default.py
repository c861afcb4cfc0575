"""The default configuration: every field at its default. Variants start from it and override.

The schema (each field's default and a comment on what it means) is written once, in the typed
blocks' dataclasses (soft_diffusion/run/settings.py, data.DataConfig, corruptions.CorruptionConfig,
models.NCSNppConfig and models.UNetConfig); `python -m soft_diffusion.run.schema` lists every field
and docs/config.md shows them. Every [choice] of docs/method.md is a field, so it can be ablated
from the command line.

A config builds on it through the package, which holds the recipe helpers too (apply_form,
apply_ve_recipe, use_soft_masks):

    from soft_diffusion.run import schema
    config = schema.default_config()
"""

import ml_collections

from soft_diffusion.run import schema


def get_config() -> ml_collections.ConfigDict:
  return schema.default_config()
