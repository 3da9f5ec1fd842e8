"""The world's language: canonical captions, their parser, loose prompts, edit instructions, the held-out split.

`caption(scene)` writes the one canonical sentence for a scene ("a red circle moving right on a
white background"); `parse(text)` reads it back, so a round trip is the identity on what a
caption states. Defaults are left unsaid: medium size, normal speed, a plain texture, and the
start region a motion implies. `loose(scene, rng)` writes what a user might type for the same
scene ("red ball, going right"); the prompt model learns to turn that into the caption.
`held_out(caption)` splits captions by a digest: training never sees a held-out caption, and
benchmarks measure on held-out ones only.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import replace

import numpy as np

from mora.nodes.world.scene import COLOURS, REGIONS, RELATIONS, SHAPES, Scene, Thing, sample_scene

DIGITAL = "in digital world style"
SPEED_WORDS = {"slow": "slowly", "normal": "", "fast": "fast"}


class CaptionError(ValueError):
    """The text is not a caption (or instruction) of the world's grammar."""


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def region_phrase(region: str) -> str:
    if region == "center":
        return "in the center"
    return f"on the {region}" if region in ("left", "right") else f"at the {region}"


def _thing(thing: Thing, explicit: bool) -> str:
    size = "" if thing.size == "medium" and not explicit else f"{thing.size} "
    text = _a(f"{size}{thing.colour} {thing.shape}")
    if thing.motion:
        text += f" moving {thing.motion}" + (f" {SPEED_WORDS[thing.speed]}" if SPEED_WORDS[thing.speed] else "")
    region = thing.start_region if explicit else thing.region
    if region is not None:
        text += f" {region_phrase(region)}"
    return text


def caption(scene: Scene, explicit: bool = False) -> str:
    """The canonical caption; `explicit` also states the defaults (size, start region)."""
    if len(scene.things) == 1:
        subject = _thing(scene.things[0], explicit)
    else:
        first, second = scene.things
        subject = f"{_a(first.colour + ' ' + first.shape)} {scene.relation} {_a(second.colour + ' ' + second.shape)}"
    texture = "striped " if scene.texture == "striped" else ""
    text = f"{subject} on {_a(texture + scene.background)} background"
    return f"{text}, {DIGITAL}" if scene.style == "digital" else text


def same(a: Scene, b: Scene) -> bool:
    """Whether two scenes say the same (a stated default equals an unstated one)."""
    return caption(a, explicit=True) == caption(b, explicit=True)


_C = "|".join(COLOURS)
_S = "|".join(SHAPES)
_R = "|".join(sorted(REGIONS, key=len, reverse=True))
_THING = rf"an? (?:(small|medium|large) )?({_C}) ({_S})"
_SINGLE = re.compile(
    rf"^{_THING}(?: moving (left|right|up|down)(?: (slowly|fast))?)?(?: (?:at|on|in) the ({_R}))?"
    rf" on an? (striped )?({_C}) background(.*)$")
_PAIR = re.compile(rf"^an? ({_C}) ({_S}) ({'|'.join(RELATIONS)}) an? ({_C}) ({_S}) on an? (striped )?({_C}) background(.*)$")


def parse(text: str) -> Scene:
    """The scene a caption states (case and surrounding space ignored; anything after the background
    is allowed, and makes the style digital if it says 'digital world')."""
    norm = " ".join(text.lower().replace("centre", "center").split()).rstrip(".")
    try:
        if m := _SINGLE.match(norm):
            size, colour, shape, motion, speed, region, striped, bg, rest = m.groups()
            speed = {"slowly": "slow", "fast": "fast"}.get(speed or "", "normal")
            thing = Thing(shape, colour, size or "medium", region, motion, speed)
            return Scene((thing,), bg, "striped" if striped else "plain", _style(rest))
        if m := _PAIR.match(norm):
            c1, s1, relation, c2, s2, striped, bg, rest = m.groups()
            return Scene((Thing(s1, c1), Thing(s2, c2)), bg, "striped" if striped else "plain", _style(rest), relation)
    except ValueError as e:
        raise CaptionError(f"caption {text!r} describes an impossible scene: {e}") from None
    raise CaptionError(f"{text!r} is not a caption of the world's grammar (e.g. 'a red circle moving right on a "
                       "white background')")


def _style(rest: str) -> str:
    return "digital" if "digital world" in rest or "pixel art" in rest else "plain"


def held_out(text: str, percent: int = 10) -> bool:
    """Whether a caption belongs to the held-out split (stable: a digest of the canonical text)."""
    return hashlib.blake2b(text.encode(), digest_size=4).digest()[0] * 100 // 256 < percent


# Edits -----------------------------------------------------------------------------------------------------

EDIT_KINDS = ("colour", "background", "shape")


def edit(scene: Scene, rng: np.random.Generator, kind: str | None = None) -> tuple[str, Scene]:
    """A random instruction for a scene and the scene it asks for."""
    kind = kind or EDIT_KINDS[rng.integers(len(EDIT_KINDS))]
    which = int(rng.integers(len(scene.things)))
    thing = scene.things[which]
    used = {t.colour for t in scene.things}
    if kind == "background":
        options = [c for c in COLOURS if c not in used and c != scene.background]
        colour = options[rng.integers(len(options))]
        return f"make the background {colour}", replace(scene, background=colour)
    if kind == "colour":
        options = [c for c in COLOURS if c not in (scene.background, thing.colour)]
        colour = options[rng.integers(len(options))]
        new = replace(thing, colour=colour)
        target = "it" if len(scene.things) == 1 and rng.random() < 0.3 else f"the {thing.shape}"
        text = f"make {target} {colour}"
    elif kind == "shape":
        options = [s for s in SHAPES if s not in {t.shape for t in scene.things}]
        shape = options[rng.integers(len(options))]
        new = replace(thing, shape=shape)
        target = "it" if len(scene.things) == 1 and rng.random() < 0.3 else f"the {thing.shape}"
        text = f"turn {target} into {_a(shape)}"
    else:
        raise ValueError(f"`kind` must be one of {list(EDIT_KINDS)} but is {kind!r}")
    things = tuple(new if i == which else t for i, t in enumerate(scene.things))
    return text, replace(scene, things=things)


_EDIT_BG = re.compile(rf"^make the background ({_C})$")
_EDIT_COLOUR = re.compile(rf"^make (it|the (?:{_S})) ({_C})$")
_EDIT_SHAPE = re.compile(rf"^turn (it|the (?:{_S})) into an? ({_S})$")


def apply_instruction(scene: Scene, text: str) -> tuple[str, Scene]:
    """The edit kind and the scene an instruction asks for."""
    norm = " ".join(text.lower().split()).rstrip(".")
    if m := _EDIT_BG.match(norm):
        return "background", replace(scene, background=m.group(1))
    for kind, pattern, field in (("colour", _EDIT_COLOUR, "colour"), ("shape", _EDIT_SHAPE, "shape")):
        if m := pattern.match(norm):
            target, value = m.groups()
            index = 0 if target == "it" else next(
                (i for i, t in enumerate(scene.things) if t.shape == target[4:]), None)
            if index is None:
                raise CaptionError(f"instruction {text!r} names a {target[4:]} but the scene has none")
            things = tuple(replace(t, **{field: value}) if i == index else t for i, t in enumerate(scene.things))
            return kind, replace(scene, things=things)
    raise CaptionError(f"{text!r} is not an instruction of the world's grammar (e.g. 'make the circle green')")


def vocabulary(samples: int = 4000, seed: int = 0) -> dict[str, int]:
    """The words of captions, style cues and edit instructions, with how often a seeded sample uses them
    (what the world's text tokenizer learns its merges from)."""
    rng = np.random.default_rng(seed)
    texts = [f"{DIGITAL}, Minecraft, pixel art"]
    for _ in range(samples):
        scene = sample_scene(rng)
        texts += [caption(scene), caption(scene, explicit=True), edit(scene, rng)[0]]
    counts: dict[str, int] = {}
    for word in re.findall(r"[a-z]+", " ".join(texts).lower()):
        counts[word] = counts.get(word, 0) + 1
    return counts


# Loose prompts ---------------------------------------------------------------------------------------------

SHAPE_WORDS = {"circle": ("circle", "ball", "dot", "disc"), "square": ("square", "box", "block"),
               "triangle": ("triangle", "triangle shape"), "diamond": ("diamond", "rhombus"),
               "cross": ("cross", "plus", "plus sign")}
SIZE_WORDS = {"small": ("small", "tiny", "little"), "medium": ("", "", "medium"), "large": ("large", "big", "huge")}
MOTION_WORDS = ("going {d}", "moving {d}", "heading {d}", "moves {d}", "travelling {d}")
SPEED_LOOSE = {"slow": ("slowly", "slow"), "normal": ("",), "fast": ("fast", "quickly", "quick")}
REGION_WORDS = {"center": ("in the middle", "centered", "in the center", "middle"),
                "top left": ("top left", "top-left corner", "upper left"),
                "top right": ("top right", "top-right corner", "upper right"),
                "bottom left": ("bottom left", "bottom-left corner", "lower left"),
                "bottom right": ("bottom right", "bottom-right corner", "lower right"),
                "top": ("at the top", "top", "up top"), "bottom": ("at the bottom", "bottom"),
                "left": ("on the left", "left side"), "right": ("on the right", "right side")}


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[rng.integers(len(options))]


def loose(scene: Scene, rng: np.random.Generator) -> str:
    """A short, loosely worded prompt for a one-thing scene, as a user might type it."""
    thing = scene.things[0]
    size = _pick(rng, SIZE_WORDS[thing.size])
    noun = " ".join(w for w in (size, thing.colour, _pick(rng, SHAPE_WORDS[thing.shape])) if w)
    parts = [noun]
    if thing.motion:
        speed = _pick(rng, SPEED_LOOSE[thing.speed])
        parts.append(" ".join(w for w in (_pick(rng, MOTION_WORDS).format(d=thing.motion), speed) if w))
    if thing.region is not None:
        parts.append(_pick(rng, REGION_WORDS[thing.region]))
    texture = "striped " if scene.texture == "striped" else ""
    if scene.background != "white" or texture or rng.random() < 0.5:
        bg = scene.background
        parts.append(_pick(rng, (f"on {texture}{bg}", f"{texture}{bg} background", f"on a {texture}{bg} background",
                                 f"against {texture}{bg}")))
    head, tail = parts[0], parts[1:]
    rng.shuffle(tail)
    sep = _pick(rng, (", ", " ", ", "))
    text = sep.join([head, *tail])
    return text.capitalize() if rng.random() < 0.2 else text

