"""The cache: content-addressed artifacts (digest-checked reads), their encodings, the index of entries,
leases and maintenance. Imports only the engine's core (errors, ports, userfiles, rundir)."""
