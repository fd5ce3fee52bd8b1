"""Sources: run catalogs, and everything from an intake-esm collection to daily predictors.

Remote endpoints probed before any library retries, extraction, canonical names and units,
the predictor cache and bias adjustment.
May import: nothing else in cascadia (only the package version); every other wing builds on it.
"""
