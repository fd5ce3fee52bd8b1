"""Sources: run catalogs, and everything from an intake-esm collection to daily predictors.

Extraction, canonical names and units, the predictor cache and bias adjustment.
May import: nothing else in cascadia (only the package version); every other wing builds on it.
"""
