"""Mora's Hydra launcher plugin (hydra/launcher=mora)."""
