"""Mora's engine: graph specs, validation, scheduling, the content-addressed cache and the CLI.

Nothing in this package imports torch; agents that need it live in `nodes/` and are imported
lazily in the process that runs them.
"""
