"""Scenes of one or two coloured shapes on a named background, placed and drawn as frames.

A `Scene` holds only what a caption says: each `Thing`'s shape, colour, size, region and motion,
the background colour and texture, and the rendering style. `place` turns it into a concrete
`Layout` (centres and half-sizes, in units of the frame's side) with seeded jitter inside the
stated regions; `render` draws a layout at a time step. Positions are the centre of a thing's
bounding box, so a detector that measures boxes reads back what was placed. A moving thing
with no stated region starts on the side it moves away from, so its motion stays in frame.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40), "green": (40, 170, 60),
    "blue": (40, 80, 220), "purple": (140, 50, 190), "white": (245, 245, 245), "grey": (128, 128, 128),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES: dict[str, float] = {"small": 0.1, "medium": 0.15, "large": 0.2}
"""Half the side of a thing's bounding box, as a fraction of the frame's side."""
REGIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0), "top": (1, 0), "top right": (2, 0), "left": (0, 1), "center": (1, 1), "right": (2, 1),
    "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2),
}
"""Region name -> (column, row) of the frame's 3 x 3 grid."""
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SPEEDS: dict[str, float] = {"slow": 0.02, "normal": 0.035, "fast": 0.05}
"""Distance per frame, as a fraction of the frame's side."""
RELATIONS: dict[str, tuple[int, int]] = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}
"""Where the first of two things is relative to the second."""
TEXTURES = ("plain", "striped")
STYLES = ("plain", "digital")
BLOCK = 4
"""Side of a digital-world block at 64 pixels (scaled with the frame)."""


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str = "medium"
    region: str | None = None
    motion: str | None = None
    speed: str = "normal"

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.shape, SHAPES, "shape"), (self.colour, COLOURS, "colour"),
                                     (self.size, SIZES, "size"), (self.speed, SPEEDS, "speed")):
            if value not in allowed:
                raise ValueError(f"`{what}` must be one of {sorted(allowed)} but is {value!r}")
        if self.region is not None and self.region not in REGIONS:
            raise ValueError(f"`region` must be one of {sorted(REGIONS)} but is {self.region!r}")
        if self.motion is not None and self.motion not in DIRECTIONS:
            raise ValueError(f"`motion` must be one of {sorted(DIRECTIONS)} but is {self.motion!r}")
        if self.region == self.implied_region:  # one scene, one form: a stated default is the default
            object.__setattr__(self, "region", None)

    @property
    def implied_region(self) -> str:
        """Where a thing starts when no region is stated: opposite its motion, or the centre if still."""
        return {None: "center", "right": "left", "left": "right", "up": "bottom", "down": "top"}[self.motion]

    @property
    def start_region(self) -> str:
        """The stated region, else the implied one."""
        return self.region or self.implied_region


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    background: str = "white"
    texture: str = "plain"
    style: str = "plain"
    relation: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.things) <= 2:
            raise ValueError(f"a scene has one or two things but has {len(self.things)}")
        if self.background not in COLOURS or self.texture not in TEXTURES or self.style not in STYLES:
            raise ValueError(f"unknown background {self.background!r}, texture {self.texture!r} or style {self.style!r}")
        if any(t.colour == self.background for t in self.things):
            raise ValueError(f"a thing has the background's colour ({self.background}) and would be invisible")
        if (len(self.things) == 2) != (self.relation in RELATIONS):
            raise ValueError(f"two things need a relation from {sorted(RELATIONS)} (one thing none); got "
                             f"{self.relation!r} for {len(self.things)}")


@dataclass(frozen=True)
class Layout:
    centres: tuple[tuple[float, float], ...]
    halves: tuple[float, ...]


def _in_region(rng: np.random.Generator, index: int, half: float, margin: float = 0.04) -> float:
    """A centre coordinate inside third `index` of the frame (with a margin) and keeping the thing inside."""
    lo, hi = max(index / 3 + margin, half + 0.02), min((index + 1) / 3 - margin, 1 - half - 0.02)
    return float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2


def place(scene: Scene, rng: np.random.Generator) -> Layout:
    """Concrete centres for a scene's things: jittered within their regions, or side by side for two."""
    halves = tuple(SIZES[t.size] for t in scene.things)
    if len(scene.things) == 1:
        col, row = REGIONS[scene.things[0].start_region]
        return Layout(((_in_region(rng, col, halves[0]), _in_region(rng, row, halves[0])),), halves)
    dx, dy = RELATIONS[scene.relation]
    gap = halves[0] + halves[1] + float(rng.uniform(0.08, 0.2))
    mx, my = rng.uniform(0.42, 0.58, size=2)
    first = (mx + dx * gap / 2, my + dy * gap / 2)
    second = (mx - dx * gap / 2, my - dy * gap / 2)
    return Layout((tuple(map(float, first)), tuple(map(float, second))), halves)


def inside(shape: str, u: Any, v: Any) -> Any:
    """Whether points (u, v), in units of a shape's half-extent around its box centre, fall inside the shape.

    Elementwise only, so numpy arrays and torch tensors both work (training draws batches on the GPU).
    """
    if shape == "circle":
        return u * u + v * v <= 1
    if shape == "square":
        return (abs(u) <= 1) & (abs(v) <= 1)
    if shape == "diamond":
        return abs(u) + abs(v) <= 1
    if shape == "triangle":  # apex up, base at the bottom of the box
        return (v >= -1) & (v <= 1) & (abs(u) <= (v + 1) / 2)
    if shape == "cross":
        a, b = abs(u), abs(v)
        return ((a <= 1 / 3) & (b <= 1)) | ((b <= 1 / 3) & (a <= 1))
    raise ValueError(f"`shape` must be one of {list(SHAPES)} but is {shape!r}")


EXTENT = {"circle": 1.0, "square": 0.85, "triangle": 1.0, "diamond": 1.0, "cross": 1.0}
"""A shape's half-extent relative to its size, so that every shape looks about as big."""


def shade(colour: str) -> np.ndarray:
    """The stripe colour of a striped background: darker, or lighter for a dark colour.

    Every stripe colour is at least 75 (RGB distance) from every other palette colour, so a thing
    is never mistaken for a stripe.
    """
    c = np.array(COLOURS[colour], dtype=np.float32)
    return c * 0.72 if c.mean() >= 90 else c * 0.6 + 70


def positions(scene: Scene, layout: Layout, frame: int) -> tuple[tuple[float, float], ...]:
    """Centres at a time step: each moving thing has gone `frame` steps in its direction."""
    out = []
    for thing, (x, y) in zip(scene.things, layout.centres):
        if thing.motion is None:
            out.append((x, y))
        else:
            dx, dy = DIRECTIONS[thing.motion]
            step = SPEEDS[thing.speed] * frame
            out.append((x + dx * step, y + dy * step))
    return tuple(out)


def render(scene: Scene, layout: Layout, size: int = 64, frame: int = 0, supersample: int = 2) -> np.ndarray:
    """An RGB uint8 frame (size x size) of the scene at a time step, anti-aliased by supersampling."""
    n = size * supersample
    img = np.empty((n, n, 3), dtype=np.float32)
    img[:] = COLOURS[scene.background]
    if scene.texture == "striped":
        img[_stripes(size, supersample)] = shade(scene.background)
    for thing, (cx, cy), half in zip(scene.things, positions(scene, layout, frame), layout.halves):
        e = half * EXTENT[thing.shape]
        x0, x1 = max(0, int((cx - e) * n) - 1), min(n, int((cx + e) * n) + 2)  # only the thing's box
        y0, y1 = max(0, int((cy - e) * n) - 1), min(n, int((cy + e) * n) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        x = (np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5) / n
        y = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5) / n
        img[y0:y1, x0:x1][inside(thing.shape, (x - cx) / e, (y - cy) / e)] = COLOURS[thing.colour]
    # box-filter down (strided sums: numpy's multi-axis mean is ten times slower here)
    img = sum(img[dy::supersample, dx::supersample] for dy in range(supersample) for dx in range(supersample))
    img /= supersample * supersample
    if scene.style == "digital":
        img = _blocky(img, scene, max(1, size * BLOCK // 64))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _stripes(size: int, supersample: int) -> np.ndarray:
    """Diagonal stripes: every third band of width size/16 (one band is 4 pixels at 64)."""
    n = size * supersample
    grid = (np.arange(n, dtype=np.float32) + 0.5) / n
    return ((((grid[None, :] + grid[:, None]) * size / 4).astype(np.int32) % 3) == 0)


def _blocky(img: np.ndarray, scene: Scene, block: int) -> np.ndarray:
    """Pixel art: each block is flat, in the scene colour nearest to the block's mean."""
    h, w = img.shape[0] // block, img.shape[1] // block
    means = img[:h * block, :w * block].reshape(h, block, w, block, 3).mean(axis=(1, 3))
    palette = [np.array(COLOURS[scene.background], dtype=np.float32), *(
        np.array(COLOURS[t.colour], dtype=np.float32) for t in scene.things)]
    if scene.texture == "striped":
        palette.append(shade(scene.background))
    pal = np.stack(palette)
    nearest = pal[np.argmin(((means[:, :, None, :] - pal) ** 2).sum(-1), axis=-1)]
    return np.repeat(np.repeat(nearest, block, axis=0), block, axis=1)


def sample_scene(rng: np.random.Generator, two: float = 0.2, moving: float = 0.4, digital: float = 0.15,
                 striped: float = 0.2) -> Scene:
    """A random scene: one thing (or, with probability `two`, two side by side) on a background."""
    names = list(COLOURS)
    background = names[rng.integers(len(names))]
    texture = "striped" if rng.random() < striped else "plain"
    style = "digital" if rng.random() < digital else "plain"
    others = [c for c in names if c != background]
    if rng.random() < two:
        shapes = rng.choice(len(SHAPES), size=2, replace=False)
        colours = rng.choice(len(others), size=2, replace=True)
        things = tuple(Thing(SHAPES[s], others[c]) for s, c in zip(shapes, colours))
        relation = list(RELATIONS)[rng.integers(len(RELATIONS))]
        return Scene(things, background, texture, style, relation)
    size = list(SIZES)[rng.integers(len(SIZES))]
    motion = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))] if rng.random() < moving else None
    speed = list(SPEEDS)[rng.integers(len(SPEEDS))] if motion else "normal"
    region = list(REGIONS)[rng.integers(len(REGIONS))] if rng.random() < 0.75 else None
    thing = Thing(SHAPES[rng.integers(len(SHAPES))], others[rng.integers(len(others))], size, region, motion, speed)
    return Scene((thing,), background, texture, style)
