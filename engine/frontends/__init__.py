"""Front ends: the `mora` and `mora-admin` commands, the Python API, Hydra sweeps and their fast path,
manifests and reports. May import every other group; nothing imports it."""
