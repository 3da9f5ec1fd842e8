"""Property test: any graph file and any overrides are either accepted or refused with MoraError."""
from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mora.engine.api import load_plan
from mora.engine.errors import MoraError

NAMES = st.sampled_from(["a", "b", "c", "prompt", "seed", "text", "video", "image", "../x", "/abs", "", "a.b", "n-1"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), NAMES)
LINKS = st.one_of(st.builds(lambda n, p: {"from": f"{n}.{p}"}, NAMES, NAMES), st.builds(lambda n: {"input": n}, NAMES),
                  st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))
VALUES = st.recursive(st.one_of(SCALARS, LINKS), lambda inner: st.lists(inner, max_size=3), max_leaves=6)
AGENTS = st.sampled_from(["text_template", "style_cue", "frame_pick", "video_concat", "image_resize", "nope", "", 3])
NODE = st.fixed_dictionaries({"agent": AGENTS}, optional={
    "in": st.dictionaries(NAMES, VALUES, max_size=3), "params": st.dictionaries(NAMES, VALUES, max_size=3),
    "graph": st.sampled_from(["animate", "nosuch", "../../etc/passwd"]), "repeat": VALUES, "extra": SCALARS})
INPUT = st.one_of(st.sampled_from(["text", "number", "image", "video", "list[text]", "bogus"]),
                  st.fixed_dictionaries({"type": st.sampled_from(["text", "number", "video", "x"])},
                                        optional={"default": SCALARS}))
GRAPH = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.fixed_dictionaries({}, optional={
        "inputs": st.one_of(SCALARS, st.dictionaries(NAMES, INPUT, max_size=3)),
        "nodes": st.one_of(SCALARS, st.dictionaries(NAMES, NODE, max_size=4)),
        "outputs": st.one_of(SCALARS, st.dictionaries(NAMES, VALUES, max_size=3)),
        "mora": st.integers(0, 2), "bogus": SCALARS}),
)
OVERRIDES = st.dictionaries(NAMES, SCALARS, max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=GRAPH, overrides=OVERRIDES)
def test_validation_accepts_or_raises_mora_error(tmp_path: Path, graph, overrides) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(graph))
    try:
        load_plan(path, overrides, standalone=True)
    except MoraError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_yaml_text_never_escapes_as_another_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        load_plan(path, {}, standalone=True)
    except MoraError:
        pass
