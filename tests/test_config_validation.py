"""Every configuration value is checked before anything runs: one message naming every bad key, exit 2."""
from __future__ import annotations

import pytest
from mora_inproc import ECHO_GRAPH, run_mora

from mora.engine.frontends.config import available_devices, check_devices

GRAPH = ECHO_GRAPH


@pytest.fixture
def mora(capsys, write_graph, tmp_path, cache_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this machine has no GPU, whatever runs the tests
    path = write_graph(GRAPH)

    def run(*overrides: str):
        result = run_mora(capsys, f"graph_file={path}", "runtime=local", "quiet=true", "prompt=fox",
                          f"hydra.run.dir={tmp_path / 'run'}", *overrides)
        assert result.status == 2, result.err
        assert result.clean, result.err
        assert not cache_dir.exists() and not (tmp_path / "run" / "manifest.json").exists()  # nothing ran
        return result.err

    return run


def test_every_bad_value_is_named_at_once_before_anything_runs(mora):
    err = mora("runtime.devices=0", "runtime.retries=-1", "runtime.batch_size=0", "cache.lock_timeout=nan",
               "runtime.max_resident_gib=-2", "runtime.max_resident_models=0", "+runtime.agent_retries.x=-1")
    for says in ["runtime.devices: must be `all` or a count of at least 1, got 0",
                 "runtime.retries: must be at least 0, got -1", "runtime.batch_size: must be at least 1, got 0",
                 "cache.lock_timeout: must be a finite number, got nan",
                 "runtime.max_resident_gib: must be at least 0, got -2",
                 "runtime.max_resident_models: must be at least 1",
                 "runtime.agent_retries: must be at least 0, got -1"]:
        assert says in err


@pytest.mark.parametrize("device", ["tpu", "cuda", "cuda:0", "banana"])
def test_an_unknown_or_unavailable_device_names_what_is_available(mora, device):
    assert f"runtime.device: device '{device}' is not available on this machine; available: auto, cpu" in mora(
        f"runtime.device={device}")


def test_available_devices_follow_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert {"cuda", "cuda:0", "cuda:1"} <= set(available_devices()) and "cuda:2" not in available_devices()


@pytest.mark.parametrize("value, ok", [("all", True), (2, True), ([0, 2], True), (0, False), (-1, False),
                                       ("two", False), ([], False), ([0, 0], False), ([-1], False), (True, False),
                                       (1.5, False), (["a"], False)])
def test_device_counts_and_lists(value, ok):
    assert (check_devices(value, None) is None) is ok


def test_a_pool_with_no_devices_is_refused_not_waited_on(mora):
    assert "runtime.devices" in mora("runtime=pool", "runtime.device=cpu", "runtime.devices=0")


@pytest.mark.parametrize("override, says", [
    ("video_format=avi", "Invalid value 'avi', expected one of [mp4, frames]"),
    ("runtime.name=nope", "Invalid value 'nope'"),
    ("runtime.devices=two", "runtime.devices: must be `all`, a count such as 2, or a list of GPU ids"),
    ("graph=graph_schema", "Could not find 'graph/graph_schema'"),
    ("model=model_schema", "Could not find 'model/model_schema'"),
])
def test_values_types_cannot_catch_are_refused_naming_the_key(mora, override, says):
    extra = ["graph_file=null"] if override.startswith("graph=") else []
    assert says in mora(override, *extra)


def test_an_objective_that_is_not_a_number_is_refused_before_running(mora):
    assert "objective 'out' is a text output of" in mora("objective=out")
    assert "objective 'nope' is not an output of" in mora("objective=nope")


@pytest.mark.parametrize("value", ["foo", "5", "true"])
def test_a_model_role_that_is_no_mapping_is_refused_naming_the_role(mora, value):
    """Even where the graph uses no model: the preset itself is wrong (`roles` is typed only `dict[str, Any]`)."""
    assert ("model.roles.text_to_image: a role is a mapping such as {source: tiny, name: NAME} (or null for none)"
            in mora(f"model.roles.text_to_image={value}"))


def test_an_empty_mora_cache_dir_means_the_default_cache_never_the_current_folder(tmp_path, monkeypatch):
    from mora.engine.cache.store import default_cache_dir
    from mora.engine.execution.standing import workers_dir

    monkeypatch.delenv("MORA_CACHE_DIR", raising=False)
    default = default_cache_dir()
    monkeypatch.setenv("MORA_CACHE_DIR", "")
    monkeypatch.chdir(tmp_path)
    assert default_cache_dir() == default and workers_dir(None) == default / "workers"
    assert tmp_path not in default.parents


def test_an_objective_that_outputs_leaves_out_is_named_as_left_out(capsys, write_graph, tmp_path, cache_dir):
    path = write_graph({**GRAPH, "inputs": {**GRAPH["inputs"], "n": {"type": "number", "default": 3}},
                        "outputs": {**GRAPH["outputs"], "num": {"input": "n"}}})
    result = run_mora(capsys, f"graph_file={path}", "runtime=local", "quiet=true", "prompt=fox", "objective=num",
                      "outputs=[out]", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 2 and result.clean, result.err
    assert "objective 'num' is an output of" in result.err and "that outputs=[out] leaves out" in result.err, \
        result.err
    assert not cache_dir.exists()
