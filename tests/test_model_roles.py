"""Model roles as the README documents them: every per-role key can be set on the command line, a mapping given for a
role replaces it, `mora-admin models` agrees with a run, and a model folder that cannot be loaded is named."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FakeContext
from mora_inproc import ECHO_GRAPH, run_admin, run_mora

from mora.engine.errors import ModelNotFoundError
from mora.engine.execution import models
from mora.engine.execution.model_kinds import folder_problem
from mora.engine.frontends.admin import compose_config

WORLD = Path(__file__).resolve().parents[1] / "nodes" / "world" / "weights"
RECIPE_24GB = ["model=recipe", "model.offload=model", "model.roles.connect.offload=group", "runtime.max_resident_gib=16"]


def roles(*overrides: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_config(list(overrides)).model.roles)


@pytest.fixture
def mora(capsys, write_graph, tmp_path, cache_dir, monkeypatch):
    """`mora` on a model-free graph; returns the result and the config the run was composed with."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write_graph(ECHO_GRAPH)

    def run(*overrides: str):
        run_dir = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        result = run_mora(capsys, f"graph_file={path}", "runtime=local", "quiet=true", "prompt=fox",
                          f"hydra.run.dir={run_dir}", *overrides)
        assert result.clean, result.err
        written = run_dir / ".hydra" / "config.yaml"
        return result, yaml.safe_load(written.read_text()) if written.exists() else None

    return run


# 2. every documented per-role key, with a plain override ------------------------------------------------------------

@pytest.mark.parametrize("overrides, role, expected", [
    (RECIPE_24GB, "connect", {"offload": "group", "dtype": "bfloat16"}),
    (["model=recipe", "model.roles.connect.quantization=nf4"], "connect", {"quantization": "nf4"}),
    (["model.roles.text_to_image.dtype=float16", "model.roles.text_to_image.variant=fp16"], "text_to_image",
     {"dtype": "float16", "variant": "fp16", "source": "package"}),
    (["model=recipe", "model.roles.prompt.revision=v1", "model.roles.prompt.attention=auto",
      "model.roles.prompt.compile=on"], "prompt", {"revision": "v1", "attention": "auto", "compile": "on"}),
    (["model=recipe", "model.roles.text_to_image.refiner.revision=v2"], "text_to_image", {"variant": "fp16"}),
])
def test_every_documented_role_key_takes_a_plain_override(mora, overrides, role, expected):
    result, config = mora(*overrides)
    assert result.status == 0, result.err
    assert expected.items() <= config["model"]["roles"][role].items(), config["model"]["roles"][role]


def test_the_readme_s_24_gb_recipe_command_composes_for_mora_admin_too(capsys, cache_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_admin(capsys, "models", *RECIPE_24GB, "model.roles.connect.quantization=nf4")
    assert result.status == 0 and "connect" in result.out and result.clean, result.err


def test_an_unknown_role_key_is_refused_naming_it(mora, capsys, cache_dir):
    result, _ = mora("model=recipe", "model.roles.connect.ofload=group", "model.roles.prompt.name=[1,2]",
                     "model.roles.text_to_image.refiner.dtype=float16")
    assert result.status == 2, result.err
    assert "model.roles.connect: unknown key 'ofload'; did you mean offload?" in result.err
    assert "model.roles.prompt.name: must be text, not [1, 2]" in result.err
    assert "model.roles.text_to_image.refiner: unknown key 'dtype'" in result.err
    admin = run_admin(capsys, "models", "model=recipe", "model.roles.connect.ofload=group")
    assert admin.status == 2 and "unknown key 'ofload'" in admin.err, admin.err


# 3. a mapping given for a role replaces it ---------------------------------------------------------------------------

def test_a_mapping_given_for_a_role_replaces_it_and_a_dotted_key_changes_one_key(mora):
    sd = str(WORLD / "sd")
    result, config = mora("model=recipe", f"model.roles.text_to_image={{source: path, name: {sd}}}",
                          "model.roles.prompt={source: hub, name: X, revision: v1}",
                          "model.roles.prompt.dtype=float16", "model.roles.image_edit.name=other/pix2pix")
    assert result.status == 0, result.err
    got = config["model"]["roles"]
    assert got["text_to_image"] == {"source": "path", "name": sd}  # no refiner, no variant left of SDXL
    assert got["prompt"] == {"source": "hub", "name": "X", "revision": "v1", "dtype": "float16"}
    assert got["image_edit"] == {"source": "hub", "name": "other/pix2pix"}
    assert roles("model=recipe", "model.roles.prompt={source: hub}")["prompt"] == {"source": "hub"}
    assert roles("model=recipe", "model.roles={prompt: {source: tiny, name: prompt_lm}}")["prompt"] == \
        {"source": "tiny", "name": "prompt_lm"}


@pytest.mark.parametrize("launcher", ["basic", "mora"])
def test_a_sweep_s_jobs_replace_the_role_as_a_run_does(capsys, write_graph, tmp_path, cache_dir, monkeypatch,
                                                       launcher):
    monkeypatch.chdir(tmp_path)
    path = write_graph(ECHO_GRAPH)
    result = run_mora(capsys, "-m", f"graph_file={path}", "runtime=local", "quiet=true", "prompt=a,b", "model=recipe",
                      f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                      "model.roles.text_to_image={source: tiny, name: sd}")
    assert result.status == 0, result.err
    for job in ("0", "1"):
        config = yaml.safe_load((tmp_path / "sweep" / job / ".hydra" / "config.yaml").read_text())
        assert config["model"]["roles"]["text_to_image"] == {"source": "tiny", "name": "sd"}


def test_mora_admin_models_lists_the_replaced_role_without_the_old_refiner(capsys, cache_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_admin(capsys, "models", "model=recipe",
                       f"model.roles.text_to_image={{source: path, name: {WORLD / 'sd'}}}")
    line = next(x for x in result.out.splitlines() if x.strip().startswith("text_to_image"))
    assert line.endswith(" present") and "refiner" not in result.out, result.out


# 6. a download that leaves a model short of present fails ------------------------------------------------------------

def test_a_download_that_leaves_a_model_incomplete_fails_naming_it(capsys, cache_dir, monkeypatch):
    def downloadable(ref):
        return models.Availability(ref["name"], None, "downloadable", size=1_900_000, to_fetch=1_900_000,
                                   files=("model.safetensors",))

    monkeypatch.setattr(models, "check_hub", downloadable)
    monkeypatch.setattr(models, "download", lambda ref, state: None)  # fetched nothing (interrupted, disk full...)
    one = ["model=tiny", "model.roles.text_to_image={source: hub, name: org/sd}"] + \
          [f"~model.roles.{r}" for r in ("prompt", "image_edit", "image_to_video", "connect", "clip", "dino")]
    result = run_admin(capsys, "models", *one, "--download")
    assert result.status == 1 and "text_to_image" in result.err, result.err
    assert "downloadable, 1.9 MB to fetch" not in result.out and "still to fetch" in result.out, result.out

    def broken(ref, state):
        raise ConnectionError("the network went away\nmore text")

    monkeypatch.setattr(models, "download", broken)
    result = run_admin(capsys, "models", *one, "--download")
    assert result.status == 1 and result.clean, result.err
    assert "the download of hub:org/sd failed: ConnectionError: the network went away" in result.err
    assert run_admin(capsys, "models", *one).status == 0  # listing only: downloadable is fine


# 10. a role a run refuses is invalid, never missing ------------------------------------------------------------------

@pytest.mark.parametrize("override", ['model.roles.prompt.name=""', "model.roles.prompt.name=no_colon",
                                      "model.roles.prompt={source: path, name: ''}"])
def test_mora_admin_models_lists_a_malformed_name_as_invalid(capsys, cache_dir, override):
    result = run_admin(capsys, "models", override)
    line = next(x for x in result.out.splitlines() if x.strip().startswith("prompt"))
    assert " invalid: " in line, result.out
    assert result.status == 2 and "invalid model role(s) prompt" in result.err, result.err


def test_mora_admin_models_still_lists_an_absent_package_folder_as_missing(capsys, cache_dir):
    result = run_admin(capsys, "models", "model.roles.prompt.name=mora.nodes.world:weights/nope")
    line = next(x for x in result.out.splitlines() if x.strip().startswith("prompt"))
    assert " missing: " in line and result.status == 0, result.out


# 8. model folders that cannot be loaded ------------------------------------------------------------------------------

def _copy(source: Path, to: Path) -> Path:
    shutil.copytree(source, to)
    return to


def test_a_pipeline_class_diffusers_does_not_have_is_refused_before_the_run(tmp_path, capsys, write_graph, cache_dir,
                                                                           monkeypatch):
    folder = _copy(WORLD / "sd", tmp_path / "sd")
    index = json.loads((folder / "model_index.json").read_text())
    assert folder_problem("text_to_image", folder) is None
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "NoSuchPipeline"}))
    assert "names the pipeline class NoSuchPipeline, which the installed diffusers" in \
        folder_problem("text_to_image", folder)
    monkeypatch.chdir(tmp_path)
    graph = write_graph({"nodes": {"k": {"agent": "text_to_image", "in": {"prompt": "a fox"},
                                         "params": {"width": 64, "height": 64, "steps": 1}}},
                         "outputs": {"image": {"from": "k.image"}}})
    result = run_mora(capsys, f"graph_file={graph}", "runtime=local", f"hydra.run.dir={tmp_path / 'run'}",
                      f"model.roles.text_to_image={{source: path, name: {folder}}}")
    assert result.status == 2 and "NoSuchPipeline" in result.err and result.clean, result.err
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_diffusers_classes_are_known_without_importing_torch(tmp_path):
    folder = _copy(WORLD / "sd", tmp_path / "sd")
    code = (f"import sys; from pathlib import Path; from mora.engine.execution.model_kinds import folder_problem; "
            f"assert folder_problem('text_to_image', Path({str(folder)!r})) is None; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _load(ref: dict, load):
    from mora.nodes.models import clear_resident, get_pipeline

    try:
        return get_pipeline(FakeContext(ref), "test-kind", load)
    finally:
        clear_resident()


def test_a_corrupt_model_folder_fails_naming_the_model_and_folder_with_the_library_s_cause(tmp_path):
    from diffusers import DiffusionPipeline
    from transformers import AutoModelForCausalLM, AutoTokenizer

    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "model_index.json").write_text("[1, 2]")
    ref = {"source": "path", "name": str(listed), "revision": None, "dtype": "float32", "variant": None}
    with pytest.raises(ModelNotFoundError) as caught:
        _load(ref, lambda location, kwargs: DiffusionPipeline.from_pretrained(location))
    message = str(caught.value)
    assert message.startswith(f"could not load model path:{listed} from '{listed}': ") and "Error: " in message, message

    lm = _copy(WORLD / "prompt_lm", tmp_path / "lm")
    (lm / "tokenizer.json").write_text("{not json")
    ref = {**ref, "name": str(lm)}
    with pytest.raises(ModelNotFoundError, match=f"could not load model path:{lm} from '{lm}': [A-Za-z]*Error"):
        _load(ref, lambda location, kwargs: AutoTokenizer.from_pretrained(location))

    config = json.loads((lm / "config.json").read_text())
    (lm / "config.json").write_text(json.dumps({**config, "model_type": "nosuchmodel"}))
    with pytest.raises(ModelNotFoundError) as caught:
        _load(ref, lambda location, kwargs: AutoModelForCausalLM.from_pretrained(location))
    assert "\n" not in str(caught.value) and "nosuchmodel" in str(caught.value), caught.value


def test_an_error_placing_a_loaded_model_is_the_agent_s_own(tmp_path):
    ref = {"source": "path", "name": str(WORLD / "sd"), "revision": None, "dtype": "float32", "variant": None}

    def place(location, kwargs):
        raise RuntimeError("`quantization` 'fp8' needs a CUDA device")

    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        _load(ref, place)
