"""Mora: a declarative DAG workflow engine for multi-agent video generation.

One import namespace for the whole project. The repository keeps its folders at the top level
(`engine/`, `nodes/`, `conf/`, `graphs/`); the package build maps them to `mora.engine`,
`mora.nodes`, `mora.conf` and `mora.graphs` (see `[tool.setuptools.package-dir]`).
"""
