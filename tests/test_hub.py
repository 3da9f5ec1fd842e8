"""Hub models: downloaded through a stand-in hub, refused clearly offline, all missing ones named at once.

The stand-in hub (tests/standin_hub.py, started by the test, stopped after) serves a tiny
diffusers pipeline built by the zoo. `mora` runs in a child process with HF_ENDPOINT pointed at it and HF_HOME at a temp dir, as
a user would run it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin_hub import COMMIT, StandInHub, folder_files, serving

from mora.engine.execution.models import wanted_files

REPO = "mora-test/tiny-sd"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInHub]:
    from mora.nodes.zoo import image_models

    folder = tmp_path_factory.mktemp("tiny-sd")
    image_models.tiny_sd(folder)
    with serving({REPO: folder_files(folder)}) as server:
        yield server


GRAPH = """\
inputs:
  prompt: {type: text, default: a fox}
nodes:
  draw:
    agent: text_to_image
    in: {prompt: {input: prompt}}
    params: {model: "hub:%s", width: 32, height: 32, steps: 1, seed: 1}
%s
outputs: {image: {from: draw.image}%s}
"""
EDIT = """\
  edit:
    agent: image_edit
    in: {image: {from: draw.image}, instruction: {input: prompt}}
    params: {model: "hub:other-org/missing-pix2pix", steps: 1, seed: 1}
"""


def mora(tmp_path: Path, graph: str, hf_home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "g.yaml").write_text(graph)
    child = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MORA_"))}
    child.update(HF_HOME=str(hf_home), MORA_CACHE_DIR=str(tmp_path / "cache"), **env)
    run_dir = f"out{len(list(tmp_path.glob('out*')))}"  # a run directory is never reused (engine.rundir)
    return subprocess.run([Path(sys.executable).parent / "mora", "graph_file=g.yaml", f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, env=child, capture_output=True, text=True, timeout=300)


def test_a_hub_model_downloads_through_the_hubs_own_cache(hub: StandInHub, tmp_path: Path) -> None:
    hf_home = tmp_path / "hf"
    run = mora(tmp_path, GRAPH % (REPO, "", ""), hf_home, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    assert run.returncode == 0, run.stderr
    snapshot = hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    assert (snapshot / "model_index.json").is_file() and list(snapshot.rglob("*.safetensors"))
    assert any(r.startswith("GET /" + REPO + "/resolve/") for r in hub.requests)
    manifest = json.loads((tmp_path / "out0" / "manifest.json").read_text())
    node = next(n for n in manifest["nodes"] if n["id"] == "draw") if isinstance(manifest["nodes"], list) \
        else manifest["nodes"]["draw"]
    assert node["model"]["commit"] == COMMIT

    # now it is on disk, the same model loads with the hub switched off, and the run is all cache hits
    again = mora(tmp_path, GRAPH % (REPO, "", ""), hf_home, HF_HUB_OFFLINE="1")
    assert again.returncode == 0, again.stderr
    assert "1 cached" in again.stderr


def test_offline_every_missing_model_is_named_at_once_before_anything_runs(tmp_path: Path) -> None:
    graph = GRAPH % (REPO, EDIT, ", edited: {from: edit.image}")
    run = mora(tmp_path, graph, tmp_path / "empty-hf", HF_HUB_OFFLINE="1")
    assert run.returncode == 2, run.stderr
    err = run.stderr
    assert "2 model(s) this run needs cannot be had" in err
    assert REPO in err and "other-org/missing-pix2pix" in err and "HF_HUB_OFFLINE is set" in err
    assert "mora-admin models --download" in err and "Traceback" not in err
    assert not (tmp_path / "cache" / "models").exists()  # nothing was loaded or built


def test_an_unknown_repository_is_named_with_the_hubs_answer(hub: StandInHub, tmp_path: Path) -> None:
    run = mora(tmp_path, GRAPH % ("nobody/nothing", "", ""), tmp_path / "hf", HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    assert run.returncode == 2 and "nobody/nothing: no such repository on the hub" in run.stderr, run.stderr


@pytest.mark.parametrize("variant, expected", [
    (None, ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
            "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]),
    ("fp16", ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
              "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]),
])
def test_a_download_fetches_one_set_of_weights_per_component(variant: str | None, expected: list[str]) -> None:
    files = ["model_index.json", "sd_xl_base_1.0.safetensors", "README.md", "unet/config.json",
             "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
             "unet/diffusion_pytorch_model.bin", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
             "vae_1_0/diffusion_pytorch_model.safetensors", "vae_decoder/model.onnx"]
    assert wanted_files(files, variant, ["unet", "vae"]) == expected


def test_a_transformers_repository_keeps_its_top_level_weights() -> None:
    files = ["config.json", "tokenizer.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
             "model.safetensors.index.json", "pytorch_model.bin", "LICENSE"]
    assert wanted_files(files, None) == ["config.json", "model-00001-of-00002.safetensors",
                                         "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                                         "tokenizer.json"]


def admin(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MORA_"))}
    child.update(HF_HOME=str(tmp_path / "hf"), MORA_CACHE_DIR=str(tmp_path / "cache"), **env)
    return subprocess.run([Path(sys.executable).parent / "mora-admin", "models", *argv], cwd=tmp_path, env=child,
                          capture_output=True, text=True, timeout=300)


def test_mora_admin_models_lists_sizes_and_presence_and_downloads(hub: StandInHub, tmp_path: Path) -> None:
    role = ["model=tiny", "model.roles.text_to_image.source=hub", f"model.roles.text_to_image.name={REPO}"]
    online = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}
    size = sum(len(data) for f, data in hub.repos[REPO].items() if f in wanted_files(hub.repos[REPO], None, ["unet", "vae",
                                                                                                 "text_encoder",
                                                                                                 "tokenizer",
                                                                                                 "scheduler"]))
    listed = admin(tmp_path, *role, **online)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.strip().startswith("text_to_image"))
    assert f"hub:{REPO}" in line and "downloadable" in line and f"{size / 1000:.1f} kB" in line, listed.stdout
    assert "tiny:prompt_lm" in listed.stdout and "not built yet" in listed.stdout

    role += [f"~model.roles.{r}" for r in ("prompt", "image_edit", "image_to_video", "connect")]  # no tiny builds
    fetched = admin(tmp_path, *role, "--download", **online)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.splitlines()[1].endswith(" present"), fetched.stdout
    offline = admin(tmp_path, *role, HF_HUB_OFFLINE="1")
    assert offline.stdout.splitlines()[1].endswith(" present"), offline.stdout

    (tmp_path / "elsewhere").mkdir()
    gone = admin(tmp_path / "elsewhere", *role, "--download", HF_HUB_OFFLINE="1")
    assert gone.returncode == 2 and "text_to_image" in gone.stderr and "HF_HUB_OFFLINE is set" in gone.stdout


def test_mora_admin_models_lists_the_world_preset_s_shipped_models_as_present(tmp_path: Path) -> None:
    """Models shipped inside the package are there from the install: present, with their size, never "not built"."""
    listed = admin(tmp_path, HF_HUB_OFFLINE="1")
    assert listed.returncode == 0, listed.stderr
    shipped = [x for x in listed.stdout.splitlines() if "package:mora.nodes.world:" in x]
    assert len(shipped) == 5, listed.stdout  # prompt, text_to_image, image_edit, image_to_video, connect
    assert all(x.endswith(" present") and " MB " in x for x in shipped), listed.stdout
    wrong = admin(tmp_path, "model.roles.image_to_video.name=mora.nodes.world:weights/nope", HF_HUB_OFFLINE="1")
    line = next(x for x in wrong.stdout.splitlines() if x.strip().startswith("image_to_video"))
    assert "missing" in line and "not a folder in the installed package" in line, wrong.stdout
