"""Execution: the scheduler, tasks, the runner that executes a task, workers, executors (in-process,
pool, Ray), model residency and progress. Imports the core, the cache and the graph language."""
