"""Experiment configs (ml_collections); variants import `configs.default` and override."""
