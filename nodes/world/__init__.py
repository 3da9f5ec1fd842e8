"""The offline world: a small procedural world of coloured shapes that the offline models learned.

Everything here is numpy only (no torch at import), seeded and deterministic:
- `scene`: what a caption can say (`Thing`, `Scene`), where things are put (`Layout`) and how a
  frame is drawn, plain or in the blocky "digital world" style, at any time step of a motion.
- `captions`: the caption grammar (scene -> canonical text -> scene), loose prompts a user might
  type, edit instructions, and the held-out split that training never sees.
- `detect`: read a frame or a video back into colours, shapes, positions, trajectories and
  blockiness (used by tests, the benchmark and metric nodes).
- `weights/`: the trained models (fp16 safetensors), loaded with `from_pretrained` by the `world` and `world_svd`
  presets.
"""
