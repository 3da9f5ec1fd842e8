"""The world training and bench command lines refuse bad values, folders and output paths up front (training/cli.py):
a usage error (exit 2) naming the option, never a value silently replaced by a default, a traceback from deep inside
diffusers or the DataLoader, nor a finished benchmark whose results cannot be written."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from training import world, world_svd, world_video

ROOT = Path(__file__).parents[1]


def saved(folder: Path, cls: str) -> Path:
    """A folder that looks like `save_pretrained` of `cls` (only its config is read before a run)."""
    folder.mkdir(parents=True)
    name = "model_index.json" if cls.endswith("Pipeline") else "config.json"
    (folder / name).write_text(json.dumps({"_class_name": cls}))
    return folder


def refused(capsys, main, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("option, value", [
    ("--steps", "0"), ("--steps", "-5"), ("--steps", "2.5"), ("--batch", "0"), ("--batch", "-1"),
    ("--workers", "-1"), ("--seed", "-1"), ("--seed", str(2 ** 64)), ("--lr", "0"), ("--lr", "-1e-3"),
    ("--lr", "nan"), ("--max-minutes", "-1"), ("--max-minutes", "inf"), ("--steps", "many")])
def test_a_number_out_of_range_or_not_a_number_is_a_usage_error_naming_the_option(capsys, tmp_path, option, value):
    err = refused(capsys, world.main, "lm", "--out", str(tmp_path / "out"), option, value)
    assert f"argument {option}: " in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything is made


def make_folders(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "config.json").write_text("{not json")
    return {"missing": tmp_path / "missing", "file": tmp_path / "a_file", "empty": tmp_path / "empty",
            "garbled": tmp_path / "garbled",
            "sd_vae": saved(tmp_path / "sd_vae", "AutoencoderKL"),
            "wan_vae": saved(tmp_path / "wan_vae", "AutoencoderKLWan"),
            "sd": saved(tmp_path / "sd", "StableDiffusionPipeline"),
            "wan": saved(tmp_path / "wan", "WanImageToVideoPipeline")}


@pytest.mark.parametrize("script, argv, says", [
    (world, ["sd", "--vae", "{missing}"], "--vae {missing}: no such folder"),
    (world, ["sd", "--vae", "{file}"], "--vae {file}: not a folder"),
    (world, ["sd", "--vae", "{empty}"], "--vae {empty}: holds no config.json, so no saved AutoencoderKL"),
    (world, ["sd", "--vae", "{garbled}"], "--vae {garbled}: config.json cannot be read"),
    (world, ["sd", "--vae", "{sd}"], "--vae {sd}: holds a pipeline, not a AutoencoderKL (its VAE is {sd}/vae)"),
    (world, ["sd", "--vae", "{wan_vae}"], "holds a AutoencoderKLWan, not a AutoencoderKL"),
    (world, ["pix2pix", "--vae", "{sd_vae}", "--init", "{sd}"],
     "--init {sd}: holds a StableDiffusionPipeline, not a StableDiffusionInstructPix2PixPipeline"),
    (world, ["vae", "--init", "{sd_vae}"], "`vae` takes no --init"),  # it would silently start afresh
    (world, ["lm", "--init", "{empty}"], "`lm` takes no --init"),
    (world, ["lm", "--vae", "{sd_vae}"], "`lm` takes no --vae"),
    (world, ["sd"], "`sd` needs --vae"),
    (world_video, ["i2v", "--vae", "{sd_vae}"], "holds a AutoencoderKL, not a AutoencoderKLWan"),
    (world_video, ["flf", "--vae", "{wan_vae}", "--init", "{missing}"], "--init {missing}: no such folder"),
    (world_video, ["vae", "--init", "{wan}"], "holds a pipeline, not a AutoencoderKLWan"),
    (world_video, ["vae", "--init", "{empty}"], "holds no config.json, so no saved AutoencoderKLWan"),
    (world_svd, ["svd", "--vae", "{wan_vae}"], "holds a AutoencoderKLWan, not a AutoencoderKLTemporalDecoder"),
    (world_svd, ["vae", "--init", "{wan_vae}"], "`vae` takes no --init"),
    (world_video, ["i2v", "--vae", "{wan_vae}", "--temporal", "2"], "`i2v` takes no --temporal"),  # the VAE's is used
    (world_video, ["flf", "--vae", "{wan_vae}", "--image-share", "0.5"], "`flf` takes no --image-share"),
])
def test_a_wrong_folder_is_a_usage_error_naming_the_option_and_what_it_holds(capsys, tmp_path, script, argv, says):
    folders = make_folders(tmp_path)
    err = refused(capsys, script.main, *[a.format(**folders) for a in argv], "--out", str(tmp_path / "out"))
    assert says.format(**folders) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_stride_the_init_vae_does_not_have_is_a_usage_error(capsys, tmp_path):
    init = saved(tmp_path / "vae", "AutoencoderKLWan")
    (init / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan", "scale_factor_temporal": 4}))
    err = refused(capsys, world_video.main, "vae", "--init", str(init), "--temporal", "2", "--out", str(tmp_path / "o"))
    assert "--temporal 2: the --init VAE packs 4 frames to a latent frame" in err  # it was silently trained at 4
    assert not (tmp_path / "o").exists()


def test_the_right_folders_and_defaults_are_accepted(tmp_path):
    folders = make_folders(tmp_path)
    args = world.parse_args("p", "doc", world.RECIPES, ["sd", "--vae", str(folders["sd_vae"]), "--init",
                                                           str(folders["sd"]), "--out", str(tmp_path / "out")])
    assert (args.steps, args.batch, args.max_minutes) == (6000, 256, 0.0) and (tmp_path / "out").is_dir()


def test_an_out_that_is_the_folder_the_run_reads_is_refused_and_left_as_it_was(capsys, tmp_path):
    folders = make_folders(tmp_path)
    before = (folders["sd"] / "model_index.json").read_text()
    err = refused(capsys, world.main, "sd", "--vae", str(folders["sd_vae"]), "--init", str(folders["sd"]),
                  "--out", f"{folders['sd']}/")
    assert "is the --init folder" in err
    err = refused(capsys, world.main, "sd", "--vae", str(folders["sd_vae"]), "--out", str(folders["sd_vae"]))
    assert "is the --vae folder" in err
    assert (folders["sd"] / "model_index.json").read_text() == before and sorted(os.listdir(folders["sd"])) == [
        "model_index.json"]


def test_an_out_that_is_a_file_or_cannot_be_written_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "a_file").write_text("kept")
    assert "--out " in refused(capsys, world.main, "lm", "--out", str(tmp_path / "a_file"))
    assert "--out " in refused(capsys, world.main, "lm", "--out", str(tmp_path / "a_file" / "under"))
    assert (tmp_path / "a_file").read_text() == "kept"
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "locked").mkdir(mode=0o500)
        assert "--out " in refused(capsys, world.main, "lm", "--out", str(tmp_path / "locked"))


@pytest.mark.parametrize("script", [world, world_video, world_svd])
def test_an_empty_out_is_a_usage_error_not_the_current_folder(capsys, script):
    err = refused(capsys, script.main, "vae", "--out", "")
    assert "--out" in err and "empty path" in err


def test_ctrl_c_during_training_exits_130_with_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "training.world", "lm", "--out", str(tmp_path), "--steps", "100000",
                             "--batch", "1", "--workers", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert '"step": 0' in proc.stdout.readline()  # training has started
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err


def test_the_usage_error_says_what_range_is_wanted(capsys, tmp_path):
    assert "argument --steps: 0 is not at least 1" in refused(capsys, world.main, "lm", "--out", "o", "--steps", "0")
    assert "argument --lr: 0 is not above 0" in refused(capsys, world.main, "lm", "--out", "o", "--lr", "0")
    assert "argument --image-share: 2 is not from 0 to 1" in refused(capsys, world_video.main, "vae", "--out", "o",
                                                                       "--image-share", "2")


def world_quality():
    spec = importlib.util.spec_from_file_location("world_quality", ROOT / "bench" / "world_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, says", [
    (["--n", "1"], "argument --n: 1 is not at least 2"), (["--n", "0"], "argument --n: 0 is not at least 2"),
    (["--steps", "0"], "argument --steps: must be >= 1, got 0 (the `steps` parameter's bounds)"),
    (["--guidance", "inf"], "argument --guidance: must be a finite number"),
    (["--image-guidance", "-1"], "argument --image-guidance: must be >= 0.0"),
    (["--device", "banana"], "argument --device: 'banana' is not a torch device"),
    (["--device", "cuda:99"], "argument --device: 'cuda:99'"),
    (["--json", "{tmp}"], "argument --json: {tmp} is a directory, not a file"),
    (["--json", "{tmp}/missing/out.json"],
     "argument --json: {tmp}/missing/out.json: folder {tmp}/missing does not exist"),
    (["--grids", "{tmp}/a_file/grids"], "--grids {tmp}/a_file/grids: "),
    (["--weights", "{tmp}/missing", "--only", "edit"], "--weights {tmp}/missing: pix2pix: no such folder"),
    (["--weights", "{tmp}/w", "--only", "prompt"],
     "--weights {tmp}/w: prompt_lm: holds a StableDiffusionPipeline, not a Qwen2ForCausalLM"),
])
def test_the_world_quality_bench_refuses_bad_arguments_before_loading_anything(capsys, tmp_path, argv, says):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "w" / "prompt_lm").mkdir(parents=True)
    (tmp_path / "w" / "prompt_lm" / "config.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    err = refused(capsys, world_quality().main, *[a.format(tmp=tmp_path) for a in argv])
    assert says.format(tmp=tmp_path) in err and "Traceback" not in err


def test_an_out_holding_a_symlinked_folder_is_refused_before_it_writes_through_it(capsys, tmp_path):
    vae = saved(tmp_path / "vae", "AutoencoderKLWan")
    (vae / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan", "scale_factor_temporal": 1}))
    out = tmp_path / "wan_flf"
    out.mkdir()
    (out / "vae").symlink_to(vae, target_is_directory=True)  # as nodes/world/weights/wan_flf/vae is wan_i2v's
    err = refused(capsys, world_video.main, "flf", "--vae", str(vae), "--out", str(out))
    assert "its vae is a symlink to another folder" in err
    assert sorted(os.listdir(vae)) == ["config.json"]
