"""Service: what other analyses use on a results store - the reader API
(:func:`cascadia.service.results.open_results`), the query behind ``cascadia-ensemble
query``, the HTTP service behind ``cascadia-ensemble serve``, and reprocessing.

May import: run, learning, sources and mooring; never twin or the top-level shells
(cli, demo, report).
"""
