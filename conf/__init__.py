"""Mora's Hydra configuration, shipped as package data and found by Hydra as `pkg://mora.conf`."""
