"""Property tests: any graph file, any command line and any environment is accepted or refused by Mora itself.

Graph files: accepted, or refused with MoraError. Command lines (`mora` overrides with environment
variables, `mora-admin` arguments): exit 0, 1 or 2 with one of Mora's messages, never a traceback.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mora_inproc import ECHO_GRAPH, run_admin, run_mora

from mora.engine.errors import MoraError
from mora.engine.frontends.api import load_plan

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


# The command-line surface: `mora` overrides and environment variables, and `mora-admin` arguments, run in
# this process (no interpreter start per example). Every outcome is 0, 1 or 2 with no traceback.

WEIRD = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=16),
    st.text(alphabet="'\"\\${}[](),=:~+ %#@!\nab0-.", max_size=12),
    st.sampled_from(["0", "-1", "1", "2", "nan", "inf", "-inf", "1e400", "[]", "[0,0]", "[0,1]", "{}", "null", "true",
                     "${oc.env:HOME}", "${x", "${now:%Y}", "a,b", "'", "cpu", "cuda", "cuda:9", "all", "mp4", "frames",
                     "out", "tiny", "local", "auto", "graph_schema", "model_schema", "choice(a,b)", "range(3)"]))
KEYS = st.sampled_from(["prompt", "inputs.prompt", "inputs.nosuch", "seed", "runtime.devices", "runtime.device",
                        "runtime.retries", "runtime.batch_size", "runtime.max_resident_gib", "runtime.name",
                        "runtime.agent_retries", "video_format", "objective", "outputs", "quiet", "cache.salt",
                        "cache.lock_timeout", "cache.dir", "graph", "model", "graph_file", "+extra", "~prompt"])
OVERRIDE = st.one_of(st.builds(lambda k, v: f"{k}={v}", KEYS, WEIRD), WEIRD.filter(lambda a: not a.startswith("-")))
ENV = st.fixed_dictionaries({
    "MORA_CACHE_DIR": st.sampled_from(["cache", "a-file", "loop", "", "missing/deeper/cache"]),
    "CUDA_VISIBLE_DEVICES": st.sampled_from([None, "", "-1", "abc"]),
})
CLI_GRAPH = {**ECHO_GRAPH, "inputs": {"prompt": {"type": "text", "default": "a fox"}}}


@pytest.fixture
def fuzz_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a graph, a file, a symlink loop and a cache to point things at."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graph.yaml").write_text(yaml.safe_dump(CLI_GRAPH))
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(overrides=st.lists(OVERRIDE, max_size=4), env=ENV)
def test_any_command_line_exits_0_1_or_2_with_one_of_moras_messages(capsys, monkeypatch, fuzz_dir, overrides, env):
    runs = len(list(fuzz_dir.glob("run-*")))
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(fuzz_dir / value) if name == "MORA_CACHE_DIR" and value else value)
    result = run_mora(capsys, "graph_file=graph.yaml", "runtime=local", "quiet=true", *overrides,
                      f"hydra.run.dir={fuzz_dir / f'run-{runs}'}")
    assert result.status in (0, 1, 2), (overrides, env, result)
    assert result.clean, (overrides, env, result.err)


ADMIN_WORDS = st.sampled_from(["validate", "draw", "agents", "schema", "cache", "stats", "list", "verify", "gc",
                               "graph.yaml", "loop", "a-file", "missing.yaml", ".", "-i", "-o", "out.dot", "out.png",
                               "--dir", "--max-size", "--max-age", "--no-repair", "prompt=x", "-h"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=st.lists(st.one_of(ADMIN_WORDS, WEIRD), max_size=5))
def test_any_mora_admin_arguments_exit_0_1_or_2_without_a_traceback(capsys, fuzz_dir, cache_dir, args):
    result = run_admin(capsys, *args)
    assert result.status in (0, 1, 2), (args, result)
    assert result.clean, (args, result.err)
