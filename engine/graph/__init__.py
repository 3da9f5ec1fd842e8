"""The graph language: agents and their registry, graph files, templates expanded into a plan, validation,
schema and cache keys. Imports the core and the cache (agents exchange artifacts)."""
