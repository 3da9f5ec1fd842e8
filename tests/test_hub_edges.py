"""Hub models at the edges: a hub that never answers, malformed repositories, partial downloads, bad settings and ids.

The hubs here are local: a socket that accepts connections and never answers, and a small HTTP server
serving repositories from a dict (the endpoints `model_info` and `hf_hub_download` call, as in
test_hub.py). `mora` and `mora-admin` run in child processes with HF_ENDPOINT pointed at them and
HF_HOME in a temp dir; what needs no hub (the local cache's verdict, a reference's checks) runs here.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standin_hub import COMMIT, StandInHub, serving

from mora.engine.execution import models

GRAPH = """\
inputs:
  prompt: {type: text, default: a fox}
nodes:
%s
outputs: {%s}
"""
NODE = """\
  draw%d:
    agent: text_to_image
    in: {prompt: {input: prompt}}
    params: {model: "%s", width: 32, height: 32, steps: 1, seed: 1}
"""


def graph(*models_: str) -> str:
    nodes = "".join(NODE % (i, m) for i, m in enumerate(models_))
    return GRAPH % (nodes, ", ".join(f"image{i}: {{from: draw{i}.image}}" for i in range(len(models_))))


def child_env(tmp_path: Path, **env: str) -> dict[str, str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MORA_"))}
    child.update(HF_HOME=str(tmp_path / "hf"), MORA_CACHE_DIR=str(tmp_path / "cache"), **env)
    return child


def mora(tmp_path: Path, text: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "g.yaml").write_text(text)
    run_dir = f"out{len(list(tmp_path.glob('out*')))}"
    return subprocess.run([Path(sys.executable).parent / "mora", "graph_file=g.yaml", "model=tiny",
                           f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=child_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=timeout)


def admin(tmp_path: Path, *argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([Path(sys.executable).parent / "mora-admin", "models", *argv], cwd=tmp_path,
                          env=child_env(tmp_path, **env), capture_output=True, text=True, timeout=timeout)


# stand-in hubs ---------------------------------------------------------------------------------
@pytest.fixture
def silent_hub() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (nor closes them)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed: the test is over
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def pipeline(index: Any) -> dict[str, bytes]:
    """A diffusers-shaped repository whose model_index.json is `index` (the weights are never fetched)."""
    return {"model_index.json": json.dumps(index).encode(), "unet/config.json": b"{}",
            "unet/diffusion_pytorch_model.safetensors": b"weights"}


GOOD_INDEX = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
              "safety_checker": [None, None], "requires_safety_checker": False}


@pytest.fixture
def dict_hub() -> Iterator[StandInHub]:
    with serving({"me/list": pipeline([1]), "me/null": pipeline(None),
                  "me/empty": pipeline({**GOOD_INDEX, "feature_extractor": []}),
                  "me/triple": pipeline({**GOOD_INDEX, "vae": ["diffusers", "AutoencoderKL", "x"]})}) as server:
        yield server


# 1. a hub that never answers ------------------------------------------------------------------
def test_a_hub_that_never_answers_is_waited_for_a_bounded_time(silent_hub: str, tmp_path: Path) -> None:
    """Each hub request waits at most HF_HUB_ETAG_TIMEOUT seconds; then the hub counts as unreachable (once, not
    once per model) and the local cache decides: missing, named, status 2, for a run and for the listing alike."""
    env = {"HF_ENDPOINT": silent_hub, "HF_HUB_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "1"}
    start = time.monotonic()
    run = mora(tmp_path, graph("hub:me/one", "hub:me/two"), timeout=60, **env)
    assert time.monotonic() - start < 40, run.stderr
    assert run.returncode == 2, run.stderr
    assert "2 model(s) this run needs cannot be had" in run.stderr
    assert "did not answer within 1 s (HF_HUB_ETAG_TIMEOUT)" in run.stderr and "Traceback" not in run.stderr

    start = time.monotonic()
    listed = admin(tmp_path, "model=tiny", "model.roles.text_to_image.source=hub",
                   "model.roles.text_to_image.name=me/one", timeout=60, **env)
    assert time.monotonic() - start < 40, listed.stdout
    line = next(x for x in listed.stdout.splitlines() if x.strip().startswith("text_to_image"))
    assert "missing" in line and "did not answer within 1 s" in line, listed.stdout


def test_every_hub_request_without_a_timeout_gets_one() -> None:
    """Listing a repository's files (snapshot_download) asks no timeout of its own: Mora's hook gives it one."""
    import httpx2
    from huggingface_hub import get_session

    models._bounded_session()
    models._bounded_session()  # once is enough: the hook is not added twice
    hooks = get_session().event_hooks["request"]
    assert hooks.count(models._bound_request) == 1
    request = httpx2.Request("GET", "http://127.0.0.1:1/", extensions={"timeout": httpx2.Timeout(None).as_dict()})
    models._bound_request(request)
    assert request.extensions["timeout"] == dict.fromkeys(("connect", "read", "write", "pool"), models.hub_timeout())
    asked = httpx2.Request("GET", "http://127.0.0.1:1/", extensions={"timeout": httpx2.Timeout(3.0).as_dict()})
    models._bound_request(asked)
    assert asked.extensions["timeout"]["read"] == 3.0  # a timeout the library asks is kept


# 4. and 11. a malformed model_index.json; no HTTP chatter ----------------------------------------
def test_a_malformed_model_index_is_a_problem_naming_the_model(dict_hub: StandInHub, tmp_path: Path) -> None:
    run = mora(tmp_path, graph("hub:me/list", "hub:me/null", "hub:me/empty", "hub:me/triple"),
               HF_ENDPOINT=dict_hub.url, HF_HUB_OFFLINE="0")
    assert run.returncode == 2, run.stderr
    err = run.stderr
    assert "4 model(s) this run needs cannot be had" in err and "internal error" not in err, err
    assert "me/list: its model_index.json is [1], not a JSON object" in err
    assert "me/null: its model_index.json is None, not a JSON object" in err
    assert "me/empty: its model_index.json gives component 'feature_extractor' as []" in err
    assert "me/triple: its model_index.json gives component 'vae' as ['diffusers', 'AutoencoderKL', 'x']" in err
    assert "HTTP Request" not in err  # httpx's INFO line per request is library chatter, quiet by default


# 5. and 11. references refused at planning --------------------------------------------------------
@pytest.mark.parametrize("revision", [1.0, 2024, True])
def test_a_revision_that_is_not_a_string_is_refused_naming_the_role(revision: object) -> None:
    preset = {"name": "p", "roles": {"text_to_image": {"source": "hub", "name": "me/model", "revision": revision}}}
    ref, problem = models.reference("text_to_image", {}, preset)
    assert ref is None and problem is not None
    assert f"model revision {revision!r} (role text_to_image) is not a string" in problem
    refined = {"name": "p", "roles": {"text_to_image": {"source": "hub", "name": "me/model", "refiner": {
        "source": "hub", "name": "me/refiner", "revision": revision}}}}
    assert "(role text_to_image refiner) is not a string" in str(models.reference("text_to_image", {}, refined)[1])


@pytest.mark.parametrize("name", ["a b/c", "x/y/z", "me/good@main", "/models/nope"])
def test_an_invalid_hub_id_is_refused_as_one_naming_the_role(name: str) -> None:
    preset = {"name": "p", "roles": {"text_to_image": {"source": "hub", "name": name}}}
    ref, problem = models.reference("text_to_image", {}, preset)
    assert ref is None and problem is not None
    assert problem.startswith(f"invalid hub model id {name!r} (role text_to_image): "), problem
    assert "cannot be reached" not in problem


@pytest.mark.parametrize("override", ["/models/nope", "./nope", "../nope/model"])
def test_a_model_written_as_a_path_that_is_not_there_is_a_missing_folder(override: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert models.parse_override(override)["source"] == "path"
    preset = {"name": "p", "roles": {"text_to_image": {"source": "tiny", "name": "sd"}}}
    ref, problem = models.reference("text_to_image", {"model": override}, preset)
    assert ref is None and problem is not None
    assert "does not exist or is not a directory (role text_to_image)" in problem, problem
    assert models.parse_override("me/model")["source"] == "hub"  # a bare id stays a hub id


# 7. a partial snapshot in the local cache -----------------------------------------------------
def snapshot(hf: Path, repo: str, files: dict[str, str | None]) -> Path:
    """A hub cache entry for `repo` at COMMIT with `files` (None: a link to a blob never fetched, as an interrupted
    download leaves none, but a copied cache may)."""
    root = hf / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    for name, text in files.items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            (snap / name).symlink_to(root / "blobs" / "never-fetched")
        else:
            (snap / name).write_text(text)
    return snap


INDEX = json.dumps({**GOOD_INDEX, "scheduler": ["diffusers", "DDIMScheduler"]})
PIPE = {"model_index.json": INDEX, "unet/config.json": "{}", "unet/diffusion_pytorch_model.safetensors": "w",
        "scheduler/scheduler_config.json": "{}"}
SHARDED = {"config.json": "{}", "model.safetensors.index.json": json.dumps({"weight_map": {
    "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}),
    "model-00001-of-00002.safetensors": "w", "model-00002-of-00002.safetensors": "w"}


def without(files: dict[str, str | None], name: str) -> dict[str, str | None]:
    return {k: v for k, v in files.items() if k != name}


@pytest.mark.parametrize("files, lacking", [
    (PIPE, None),
    ({**PIPE, "unet/diffusion_pytorch_model.fp16.safetensors": "w"}, None),
    ({"config.json": "{}", "model.safetensors": "w", "tokenizer.json": "{}"}, None),
    (SHARDED, None),
    ({"config.json": "{}", "diffusion_pytorch_model.safetensors.index.fp16.json": json.dumps({"weight_map": {
        "a": "diffusion_pytorch_model-00001-of-00001.fp16.safetensors"}}),
      "diffusion_pytorch_model-00001-of-00001.fp16.safetensors": "w"}, None),
    ({"config.json": "{}"}, "no weights"),
    (without(SHARDED, "model-00002-of-00002.safetensors"), "1 shard(s) its model.safetensors.index.json lists are not there (model-00002-of-00002.safetensors)"),
    ({"config.json": "{}", "model.safetensors": None}, "no weights"),
    ({"model.safetensors": "w"}, "no model_index.json, and no config.json"),
    (without(PIPE, "unet/diffusion_pytorch_model.safetensors"), "unet/: no weights"),
    (without(PIPE, "unet/config.json"), "unet/: no config"),
    (without(PIPE, "scheduler/scheduler_config.json"), "scheduler/: no config"),
    ({"model_index.json": INDEX}, "unet/: no config"),
])
def test_offline_a_snapshot_is_present_only_when_loading_has_what_it_needs(
        files: dict[str, str | None], lacking: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    snapshot(tmp_path / "hf", "me/model", files)
    found = models.check_hub({"name": "me/model", "revision": None})  # offline in tests (conftest)
    if lacking is None:
        assert (found.state, found.commit) == ("present", COMMIT), found.reason
    else:
        assert found.state == "missing" and f"incomplete in the local Hugging Face cache ({lacking}" in found.reason


def test_offline_a_run_with_a_partial_snapshot_is_refused_before_it_starts(tmp_path: Path) -> None:
    snapshot(tmp_path / "hf", "me/model", {"config.json": "{}"})  # what an interrupted download leaves
    run = mora(tmp_path, graph("hub:me/model"), HF_HUB_OFFLINE="1")
    assert run.returncode == 2, run.stderr
    assert "me/model: incomplete in the local Hugging Face cache (no weights" in run.stderr, run.stderr
    assert "HF_HUB_OFFLINE is set" in run.stderr and "failed" not in run.stderr


# 9. a Hugging Face setting the library cannot read ----------------------------------------------
def test_an_unreadable_hub_setting_is_the_users_input_named(tmp_path: Path) -> None:
    run = mora(tmp_path, graph("tiny:sd"), HF_HUB_OFFLINE="1", HF_HUB_ETAG_TIMEOUT="abc")
    assert run.returncode == 2, run.stderr
    assert "HF_HUB_ETAG_TIMEOUT='abc' cannot be read by huggingface_hub" in run.stderr, run.stderr
    assert "internal error" not in run.stderr and "failed" not in run.stderr
    listed = admin(tmp_path, "model=tiny", "model.roles.text_to_image.source=hub",
                   "model.roles.text_to_image.name=me/model", HF_HUB_OFFLINE="1", HF_HUB_ETAG_TIMEOUT="abc")
    assert listed.returncode == 2 and "HF_HUB_ETAG_TIMEOUT='abc'" in listed.stderr, listed.stderr
