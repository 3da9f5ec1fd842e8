"""Mora's engine, in layers (lowest first; no module imports a layer above its own, tests/test_layers.py):

- core (this folder's modules): errors, port types, bounded reading of user files, the run-directory contract;
- `cache/`: content-addressed artifacts, their encodings, the index, leases and maintenance;
- `graph/`: agents and their registry, graph files, templates expanded into a plan, validation, keys;
- `execution/`: the scheduler, tasks, runners, workers and executors, model residency, settings;
- `frontends/`: the `mora` and `mora-admin` commands, the Python API, sweeps, manifests and reports.

Nothing in this package imports torch at module level, nor the agents (`nodes/`): they come through
entry points and are imported lazily in the process that runs them.
"""
