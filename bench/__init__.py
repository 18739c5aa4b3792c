"""ExecGate's benchmarks: what ExecGate adds to a raw exec, measured against a baseline
taken in the same run.

``python -m bench`` (``make bench``) runs every benchmark, each in a fresh Python
process, and prints one JSON line per benchmark to stdout::

    {"bench": "exec_overhead", "ratio": 1.08, "baseline_ms": 9.1, "median_ms": 9.8,
     "target": "<= 1.15", "met": true, "cores": 2, ...}

``--only NAME`` (repeatable) runs a subset, ``--quick`` runs fewer iterations (a smoke
test; its figures are not the ones to quote). The benchmark modules are listed in
``bench.registry``; each exposes ``run(quick: bool) -> dict``.
"""
