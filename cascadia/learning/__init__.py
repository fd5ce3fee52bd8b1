"""Learning: features, models, folds, training, calibration, scoring and baselines, jobs.

May import: sources and mooring; never run, twin or the top-level shells (cli, demo, report).
"""
