"""Cache keys: stable for the same ingredients (in any process), different when any ingredient changes."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from engine_agents import COUNT
from hypothesis import given, settings
from hypothesis import strategies as st

from mora.engine.graph import keys
from mora.engine.graph.keys import canonical, digest_of, node_key

D1, D2 = "a" * 64, "b" * 64
BASE: dict[str, Any] = {
    "agent": "t_add",
    "agent_version": 1,
    "params": {"offset": 0.1, "label": "héllo", "steps": 4, "flag": True, "none": None},
    "seed": 7,
    "inputs": {"a": D1, "clips": [D1, D2]},
    "model": {"source": "hub", "name": "org/model", "revision": "abc", "dtype": "float16", "variant": None,
              "weights": "c" * 64},
    "libraries": ("diffusers", "torch"),
    "salt": "",
}


def key(**changes: Any) -> str:
    return node_key(**{**BASE, **changes})


def test_same_ingredients_same_key():
    assert key() == key() == node_key(**json.loads(json.dumps(BASE)))
    assert len(key()) == 64 and int(key(), 16) >= 0


def test_key_is_the_same_in_another_process():
    code = ("import json, sys; from mora.engine.graph.keys import node_key; kw = json.loads(sys.stdin.read()); "
            "print(node_key(**kw))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(BASE), capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert out == key()


def test_mapping_order_does_not_matter():
    reordered = {k: BASE["params"][k] for k in reversed(BASE["params"])}
    assert key(params=reordered) == key()
    assert key(libraries=("torch", "diffusers")) == key()


def _model(**changes: Any) -> dict[str, Any]:
    return {**BASE["model"], **changes}


@pytest.mark.parametrize("changes", [
    {"agent": "t_sub"},
    {"agent_version": 2},
    {"params": {**BASE["params"], "offset": 0.2}},
    {"params": {**BASE["params"], "label": "hello"}},
    {"params": {**BASE["params"], "steps": 5}},
    {"params": {**BASE["params"], "flag": False}},
    {"params": {**BASE["params"], "none": 0}},
    {"params": {**BASE["params"], "extra": 1}},
    {"params": {k: v for k, v in BASE["params"].items() if k != "steps"}},
    {"seed": 8},
    {"seed": None},
    {"inputs": {"a": D2, "clips": [D1, D2]}},
    {"inputs": {"a": D1, "clips": [D2, D1]}},
    {"inputs": {"a": D1, "clips": [D1]}},
    {"inputs": {"b": D1, "clips": [D1, D2]}},
    {"model": None},
    {"model": _model(source="path")},
    {"model": _model(name="org/other")},
    {"model": _model(revision="def")},
    {"model": _model(dtype="float32")},
    {"model": _model(variant="fp16")},
    {"model": _model(weights="d" * 64)},
    {"model": {**_model(), "build": 2}},
    {"salt": "x"},
    {"libraries": ("diffusers",)},
    {"libraries": ("diffusers", "torch", "transformers")},
], ids=lambda c: ",".join(f"{k}" for k in c))
def test_each_ingredient_changes_the_key(changes):
    assert key(**changes) != key()


def test_library_versions_change_the_key(monkeypatch):
    versions = {"diffusers": "0.35.0", "torch": "2.5.0"}
    monkeypatch.setattr(keys, "version", lambda name: versions[name])
    keys.library_version.cache_clear()
    try:
        before = key()
        assert key() == before
        versions["torch"] = "2.6.0"
        keys.library_version.cache_clear()
        assert key() != before
    finally:
        keys.library_version.cache_clear()


def test_absent_library_has_a_stable_version():
    assert keys.library_version("surely-not-an-installed-distribution-xyz") == "absent"
    assert key(libraries=("surely-not-an-installed-distribution-xyz",)) != key(libraries=())


@pytest.mark.parametrize("a, b", [
    (1, 1.0), (1, "1"), (1.0, "1.0"), (True, 1), (False, 0), (None, "null"), (None, "None"), (0.0, -0.0),
    (0.1 + 0.2, 0.3), ([1, 2], [2, 1]), ([1], 1), ({"a": 1}, [["a", 1]]), ("", None), (2**70, float(2**70)),
])
def test_values_are_type_tagged(a, b):
    assert canonical(a) != canonical(b)
    assert digest_of(a) != digest_of(b)
    assert key(params={"x": a}) != key(params={"x": b})


def test_floats_are_written_exactly():
    assert canonical(0.1) == ["float", "0x1.999999999999ap-4"]
    assert canonical(10**30) == ["int", str(10**30)]


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", {1: "a"}, {"a": object()}, [object()]])
def test_values_that_have_no_canonical_form_are_refused(value):
    with pytest.raises(TypeError):
        digest_of(value)


def test_run_only_params_stay_out_of_the_key():
    resolved = COUNT.resolve_params({"value": 2.0, "path": "/tmp/a", "sleep": 0.5})
    assert COUNT.keyed_params(resolved) == {"value": 2.0}
    other = COUNT.resolve_params({"value": 2.0, "path": "/elsewhere", "sleep": 0.0})
    assert key(params=COUNT.keyed_params(other)) == key(params=COUNT.keyed_params(resolved))
    assert key(params=COUNT.keyed_params({**resolved, "value": 3.0})) != key(params=COUNT.keyed_params(resolved))


def test_run_only_param_change_is_a_cache_hit_end_to_end(write_graph, run_graph, tmp_path):
    def graph(path: str, value: float) -> Any:
        return write_graph({"nodes": {"c": {"agent": "t_count", "params": {"path": path, "value": value}}},
                            "outputs": {"out": {"from": "c.value"}}})

    first = run_graph(graph(str(tmp_path / "one.log"), 1.0)).manifest["nodes"]["c"]
    again = run_graph(graph(str(tmp_path / "two.log"), 1.0)).manifest["nodes"]["c"]
    assert (again["key"], again["status"]) == (first["key"], "cached")
    assert again["params"]["path"] == str(tmp_path / "two.log")
    assert not (tmp_path / "two.log").exists()
    changed = run_graph(graph(str(tmp_path / "two.log"), 2.0)).manifest["nodes"]["c"]
    assert changed["key"] != first["key"] and changed["status"] == "done"


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4),
                                                                                           inner, max_size=3),
                      max_leaves=8)


def typed(value: Any) -> Any:
    """Equality that sees types (1, 1.0, True, '1' all differ): an independent model of canonical()."""
    if isinstance(value, bool) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, (int, str)):
        return (type(value).__name__, value)
    if isinstance(value, list):
        return ("list", tuple(typed(v) for v in value))
    return ("dict", frozenset((k, typed(v)) for k, v in value.items()))


@settings(max_examples=300, deadline=None, database=None)
@given(VALUES, VALUES)
def test_digests_are_equal_exactly_for_typed_equal_values(a, b):
    assert (digest_of(a) == digest_of(b)) == (typed(a) == typed(b))
    assert digest_of(a) == digest_of(reordered(a))


def reordered(value: Any) -> Any:
    """The same value built afresh, with every mapping's insertion order reversed."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def test_a_hub_model_is_identified_by_the_commit_its_revision_resolves_to(tmp_path, monkeypatch):
    from mora.engine.cache.store import Store
    from mora.engine.execution.models import identity

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    refs = tmp_path / "hub" / "models--org--model" / "refs"
    store = Store(tmp_path / "cache")
    ref = {"source": "hub", "name": "org/model", "revision": None, "dtype": "float16", "variant": None}
    assert identity(ref, store)["commit"] is None  # not downloaded: the agent will say how to provide it
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40 + "\n")
    first = identity(ref, store)
    assert first["commit"] == "a" * 40
    (refs / "main").write_text("b" * 40)  # the cached snapshot moved on
    assert digest_of(identity(ref, store)) != digest_of(first)
    (refs / "v1").write_text("c" * 40)
    assert identity({**ref, "revision": "v1"}, store)["commit"] == "c" * 40
    assert identity({**ref, "revision": "d" * 40}, store)["commit"] == "d" * 40
    store.close()


def test_quantization_enters_the_model_identity_and_offload_does_not(tmp_path):
    from mora.engine.cache.store import Store
    from mora.engine.execution.models import identity, resolve
    from mora.engine.graph.agent import Agent

    agent = Agent(type="t", version=1, description="d", run=lambda *a: {}, model_role="draw")
    preset = {"name": "p", "dtype": "float16", "roles": {"draw": {"source": "tiny", "name": "sd"}}}
    store = Store(tmp_path / "cache")
    plain, _ = resolve(agent, {}, preset)
    offloaded, _ = resolve(agent, {}, {**preset, "offload": "group"})
    quantized, _ = resolve(agent, {}, {**preset, "quantization": "nf4"})
    assert offloaded["offload"] == "group" and quantized["quantization"] == "nf4"
    assert digest_of(identity(offloaded, store)) == digest_of(identity(plain, store))
    assert digest_of(identity(quantized, store)) != digest_of(identity(plain, store))
    role_wins, _ = resolve(agent, {}, {**preset, "offload": "group",
                                       "roles": {"draw": {"source": "tiny", "name": "sd", "offload": "model"}}})
    assert role_wins["offload"] == "model"
    assert resolve(agent, {}, {**preset, "quantization": "fp3"})[1] == \
        "model quantization 'fp3' is not one of ['none', 'int8', 'nf4', 'fp8', 'fp8_attention']"
    fp8, _ = resolve(agent, {}, {**preset, "quantization": "fp8"})
    fp8_attention, _ = resolve(agent, {"attention": "auto"}, {**preset, "quantization": "fp8_attention"})
    fast, _ = resolve(agent, {}, {**preset, "compile": "on", "attention": "sdpa_cudnn"})
    digests = {digest_of(identity(ref, store)) for ref in (plain, quantized, fp8, fp8_attention)}
    assert len(digests) == 4  # FP8 attention changes results beyond FP8's: a model of its own
    assert resolve(agent, {"attention": "sdpa_fa4"}, {**preset, "quantization": "fp8_attention"})[1] == (
        "model quantization 'fp8_attention' runs attention in FP8 itself; attention 'sdpa_fa4' cannot go with it "
        "(use attention=sdpa, or quantization=fp8)")
    assert digest_of(identity(fast, store)) == digest_of(identity(plain, store))  # compile, attention: run-only
    store.close()


def test_a_refiner_is_part_of_the_model_identity_and_stays_with_its_role(tmp_path):
    from mora.engine.cache.store import Store
    from mora.engine.execution.models import identity, resolve
    from mora.engine.graph.agent import Agent

    agent = Agent(type="t", version=1, description="d", run=lambda *a: {}, model_role="draw")
    role = {"source": "tiny", "name": "sdxl", "refiner": {"source": "tiny", "name": "sdxl_refiner"}}
    preset = {"name": "p", "dtype": "float16", "roles": {"draw": role}}
    store = Store(tmp_path / "cache")
    ref, problem = resolve(agent, {}, preset)
    assert problem is None and ref["refiner"]["dtype"] == "float16" and ref["refiner"]["name"] == "sdxl_refiner"
    other, _ = resolve(agent, {}, {**preset, "roles": {"draw": {**role, "refiner": {"source": "tiny", "name": "x"}}}})
    assert digest_of(identity(ref, store)) != digest_of(identity(other, store))
    overridden, _ = resolve(agent, {"model": "tiny:sd"}, preset)
    assert "refiner" not in overridden  # another base model does not inherit the role's refiner
    assert "needs `source`" in resolve(agent, {}, {**preset, "roles": {"draw": {**role, "refiner": {"name": "x"}}}})[1]
    store.close()


def test_a_param_only_with_a_missing_parameter_value_is_refused_when_the_agent_is_declared():
    from mora.engine.graph.agent import Agent, Param

    mode = Param("mode", str, "a", "", choices=("a", "b"))
    with pytest.raises(ValueError, match="'level' only_with"):
        Agent("x", 1, "", lambda *a: {}, params=(mode, Param("level", int, 1, "", only_with=("mode", "c"))))
    with pytest.raises(ValueError, match="names no such"):
        Agent("x", 1, "", lambda *a: {}, params=(Param("level", int, 1, "", only_with=("nope", "a")),))
    ok = Agent("x", 1, "", lambda *a: {}, params=(mode, Param("level", int, 1, "", only_with=("mode", "b"))))
    assert ok.keyed_params({"mode": "a", "level": 2}) == {"mode": "a"}
    assert ok.keyed_params({"mode": "b", "level": 2}) == {"mode": "b", "level": 2}
