"""Experiment configs (ml_collections). They are loaded by path (`--config configs/X.py`,
`schema.load_config`) and import only the installed package; this file is not needed for that. It
stays so that scripts with the repository root on sys.path may still `from configs import digits`."""
