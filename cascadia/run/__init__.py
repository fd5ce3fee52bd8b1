"""Run: a trained ensemble over every combination on Dask, the results store and its spread.

May import: learning, sources and mooring; never twin or the top-level shells (cli, demo, report).
"""
