"""One module per `--mode`: train, sample, levels, evaluate (stats and eval; evaluate_fid and
evaluate_exact measure), restore. Each takes the Settings and the Workdir the preamble made."""
