"""Mora's agents, one per module; each module defines `AGENT` and imports without torch.

They reach the engine only through entry points (pyproject.toml): each agent module under the
`mora.agents` group, and the model loader (mora.nodes.models:LOADER) under `mora.model_loader`.
"""
