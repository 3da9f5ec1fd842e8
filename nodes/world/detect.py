"""Reading frames back into the world: background, things (colour, shape, position, size), motion, blockiness.

The policy is the renderer's, inverted, and tolerant of a generator's noise:
- the background is the palette colour nearest the median of the frame's border; it is striped
  if a sizeable share of the border is near that colour's stripe shade;
- foreground pixels are those far (in RGB) from the background (and, nearer, from its stripe shade); connected parts
  of at least `MIN_AREA` pixels (scaled to the frame) are things;
- a thing's colour is the palette colour nearest the median of its pixels; its shape is the one
  whose template, fitted to the part's bounding box, overlaps the part best (IoU); its position
  is the box centre, in units of the frame's side, as `scene.place` puts it;
- a video's trajectory follows each thing of the first frame by colour and shape; its direction
  is the larger axis of the net displacement, or "still" under `STILL` of the frame's side;
- a named thing (colour and shape known, as a benchmark knows them) is followed through a video
  the same way, nearest where it was last seen (`follow`); `kept` says, frame by frame, whether it
  is there with its colour and shape;
- a transition joins two clips (`join`) when its first frame has the thing where the first clip's
  last frame has it, its last frame where the second clip's first frame has it, and in between
  the thing is seen once in every frame, never turns back along the way (beyond `SLACK` pixels),
  never jumps (no step over `JUMP` of the way) and keeps its size (its area within a factor of
  `GROWTH` of the ends'): a cross-fade shows two faded things or none, one that jumps, or, where
  the ends overlap, one blob of both that swells or shrinks mid-way, so it does not join;
- blockiness is the share of a frame's variance that is between blocks of `BLOCK` pixels
  (1.0 for pixel art aligned to the blocks, lower for smooth drawing).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mora.nodes.world.scene import BLOCK, COLOURS, EXTENT, REGIONS, SHAPES, SIZES, inside, shade

FAR = 70.0
"""RGB distance beyond which a pixel is not background."""
MIN_AREA = 12
"""Smallest thing, in pixels of a 64 x 64 frame."""
STILL = 0.04
"""Net displacement (fraction of the frame's side) under which a thing did not move."""
BLOCKY = 0.97
"""Blockiness from which a frame counts as digital-world pixel art."""
SLACK = 1.5
"""Pixels a thing may fall back along a transition's way between frames (the detector's own jitter)."""
JUMP = 0.5
"""The largest share of a transition's way one frame-to-frame step may cover (at least `JUMP_PX` pixels)."""
JUMP_PX = 4.0
GROWTH = 1.35
"""How far a thing's area may stray from its mean at the ends of a transition (a factor either way): renderer
glides stay within it 99% of the time; cross-fades of ends 8-20 px apart that pass every other check swell 1.42x
or more."""

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Found:
    colour: str
    shape: str
    centre: tuple[float, float]
    half: float
    area: int
    fit: float
    """IoU of the part with its shape's template (1.0: drawn exactly)."""

    @property
    def region(self) -> str:
        return region_of(self.centre)

    @property
    def size(self) -> str:
        return min(SIZES, key=lambda s: abs(SIZES[s] - self.half))


@dataclass(frozen=True)
class Reading:
    background: str
    texture: str
    things: tuple[Found, ...]
    mask: np.ndarray
    """Foreground pixels (bool, H x W)."""


@dataclass(frozen=True)
class Track:
    colour: str
    shape: str
    centres: tuple[tuple[float, float] | None, ...]
    """The thing's centre in each frame (None where it was not found)."""

    @property
    def displacement(self) -> tuple[float, float]:
        seen = [c for c in self.centres if c is not None]
        return (seen[-1][0] - seen[0][0], seen[-1][1] - seen[0][1]) if seen else (0.0, 0.0)

    @property
    def direction(self) -> str:
        dx, dy = self.displacement
        if max(abs(dx), abs(dy)) < STILL:
            return "still"
        return ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")

    @property
    def speed(self) -> float:
        """Mean distance per frame, as a fraction of the frame's side."""
        seen = [i for i, c in enumerate(self.centres) if c is not None]
        if len(seen) < 2:
            return 0.0
        return float(np.hypot(*self.displacement)) / (seen[-1] - seen[0])


def nearest_colour(rgb: np.ndarray, exclude: Sequence[str] = ()) -> str:
    d = ((_PALETTE - np.asarray(rgb, dtype=np.float32)) ** 2).sum(-1)
    for name in exclude:
        d[_NAMES.index(name)] = np.inf
    return _NAMES[int(np.argmin(d))]


def region_of(centre: tuple[float, float]) -> str:
    col, row = (min(2, max(0, int(c * 3))) for c in centre)
    return next(name for name, cell in REGIONS.items() if cell == (col, row))


def _as_array(frame: object) -> np.ndarray:
    arr = np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"a frame must be H x W x 3 (RGB) but has shape {arr.shape}")
    return arr.astype(np.float32)


def read(frame: object) -> Reading:
    """What a frame (PIL image or H x W x 3 array) shows."""
    from scipy import ndimage

    img = _as_array(frame)
    h, w, _ = img.shape
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3),
                             img[:, -2:].reshape(-1, 3)])
    background = nearest_colour(np.median(border, axis=0))
    bg = np.array(COLOURS[background], dtype=np.float32)
    stripe = shade(background)
    striped = np.mean(np.linalg.norm(border - stripe, axis=-1) < FAR / 2) > 0.15
    far = np.linalg.norm(img - bg, axis=-1) > FAR
    if striped:  # stripe colours are >= 75 from any thing's colour (scene.shade), so a tighter test
        far &= np.linalg.norm(img - stripe, axis=-1) > FAR * 0.6
    labels, _ = ndimage.label(far)
    min_area = max(3, MIN_AREA * h * w // 4096)
    things = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[box] == index
        if part.sum() < min_area:
            far[box][part] = False
            continue
        things.append(_thing(img[box][part], part, box, (w, h), exclude=(background,)))
    things.sort(key=lambda f: -f.area)
    return Reading(background, "striped" if striped else "plain", tuple(things), far)


def _thing(pixels: np.ndarray, part: np.ndarray, box: tuple[slice, slice], size: tuple[int, int],
           exclude: Sequence[str]) -> Found:
    w, h = size
    ph, pw = part.shape
    ex, ey = pw / 2, ph / 2
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32) + 0.5
    u, v = (xx - ex) / ex, (yy - ey) / ey
    fits = {}
    for shape in SHAPES:
        template = inside(shape, u, v)
        fits[shape] = float((template & part).sum() / max(1, (template | part).sum()))
    shape = max(fits, key=fits.get)
    centre = ((box[1].start + ex) / w, (box[0].start + ey) / h)
    half = max(ex / w, ey / h) / EXTENT[shape]
    return Found(nearest_colour(np.median(pixels, axis=0), exclude), shape, centre, half, int(part.sum()), fits[shape])


def track(frames: Sequence[object]) -> tuple[Track, ...]:
    """Each thing of the first frame followed through a video by its colour and shape."""
    readings = [read(f) for f in frames]
    if not readings:
        raise ValueError("a video to track needs at least one frame")
    tracks = []
    for first in readings[0].things:
        centres = []
        for reading in readings:
            match = [t for t in reading.things if (t.colour, t.shape) == (first.colour, first.shape)] or \
                    [t for t in reading.things if t.colour == first.colour]
            centres.append(min(match, key=lambda t: np.hypot(t.centre[0] - first.centre[0],
                                                               t.centre[1] - first.centre[1])).centre
                           if match else None)
        tracks.append(Track(first.colour, first.shape, tuple(centres)))
    return tuple(tracks)


def _pick(things: Sequence[Found], colour: str, shape: str, near: tuple[float, float] | None) -> Found | None:
    """The thing of this colour and shape (of this colour alone if none has the shape: motion blurs a shape)
    nearest `near`, or the largest where there is no `near`."""
    match = [t for t in things if (t.colour, t.shape) == (colour, shape)] or [t for t in things if t.colour == colour]
    if not match:
        return None
    if near is None:
        return match[0]  # `read` sorts things by area, largest first
    return min(match, key=lambda t: np.hypot(t.centre[0] - near[0], t.centre[1] - near[1]))


def follow(frames: Sequence[object], colour: str, shape: str) -> Track:
    """A named thing followed through a video, frame by frame from where it was last seen (None where it is not)."""
    centres: list[tuple[float, float] | None] = []
    last = None
    for frame in frames:
        found = _pick(read(frame).things, colour, shape, last)
        centres.append(found.centre if found else None)
        last = found.centre if found else last
    return Track(colour, shape, tuple(centres))


def kept(frames: Sequence[object], colour: str, shape: str) -> tuple[bool, ...]:
    """Whether each frame shows a thing of this colour and shape."""
    return tuple(any((t.colour, t.shape) == (colour, shape) for t in read(f).things) for f in frames)


@dataclass(frozen=True)
class Join:
    """How a transition joins two clips (distances in pixels)."""

    start_gap: float
    """From the thing in the first clip's last frame to the thing in the transition's first frame."""
    end_gap: float
    """From the thing in the transition's last frame to the thing in the second clip's first frame."""
    monotone: bool
    """Seen once in every frame of the transition, never turning back along the way, never jumping."""
    steady: bool
    """Its size kept along the way (`GROWTH`)."""

    def joins(self, px: float = 4.0) -> bool:
        return self.start_gap <= px and self.end_gap <= px and self.monotone and self.steady


def join(before: object, transition: Sequence[object], after: object, colour: str, shape: str) -> Join:
    """How `transition` carries the thing from where `before` has it to where `after` has it (see the policy)."""
    if len(transition) < 2:
        raise ValueError(f"a transition to judge needs at least two frames but has {len(transition)}")
    readings = [read(f) for f in (before, *transition, after)]
    h, w = _as_array(before).shape[:2]
    ends = [_pick(r.things, colour, shape, None) for r in (readings[0], readings[-1])]
    if None in ends:
        return Join(np.inf, np.inf, False, False)
    a, b = (np.array(e.centre) * (w, h) for e in ends)
    points: list[np.ndarray | None] = []
    areas: list[int] = []
    last = tuple(a / (w, h))
    for r in readings[1:-1]:
        found = _pick(r.things, colour, shape, last)
        points.append(None if found is None else np.array(found.centre) * (w, h))
        areas.append(found.area if found else 0)
        last = found.centre if found else last
    gap = lambda p, q: float(np.inf if p is None else np.hypot(*(p - q)))
    start_gap, end_gap = gap(points[0], a), gap(points[-1], b)
    once = all(sum(t.colour == colour for t in r.things) == 1 for r in readings[1:-1])
    if not once or any(p is None for p in points):
        return Join(start_gap, end_gap, False, False)
    way = b - a
    length = float(np.hypot(*way))
    along = [0.0, *(float(np.dot(p - a, way)) / length if length else 0.0 for p in points), length]
    steps = np.diff(along)
    size = (ends[0].area + ends[1].area) / 2
    steady = all(size / GROWTH <= area <= size * GROWTH for area in areas)
    monotone = bool(steps.min() >= -SLACK and np.abs(steps).max() <= max(JUMP_PX, JUMP * length))
    return Join(start_gap, end_gap, monotone, steady)


def blockiness(frame: object, block: int | None = None) -> float:
    """Share of the frame's variance that lies between `block`-pixel blocks (default: the style's, scaled)."""
    img = _as_array(frame)
    h, w, _ = img.shape
    block = block or max(1, w * BLOCK // 64)
    img = img[:h // block * block, :w // block * block]
    total = float(((img - img.mean(axis=(0, 1))) ** 2).sum())
    if total < 1e-6:
        return 1.0
    blocks = img.reshape(h // block, block, w // block, block, 3)
    within = float(((blocks - blocks.mean(axis=(1, 3), keepdims=True)) ** 2).sum())
    return 1.0 - within / total


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0
