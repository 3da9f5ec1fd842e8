"""Sweeps through Hydra: the Mora launcher merges jobs into one DAG; basic launcher agrees; Optuna."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mora.engine.frontends.report import write_run_report


def mora(tmp: Path, models: Path, *args: str, cache: str = "cache") -> subprocess.CompletedProcess:
    env = {"MORA_CACHE_DIR": str(tmp / cache), "MORA_MODELS_DIR": str(models), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp)}
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    preset = [] if any(a.startswith("model=") for a in overrides) else ["model=tiny"]  # launchers, not meaning: fast
    return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", *flags, "runtime=local",
                           "runtime.device=cpu", "quiet=true", *preset, *overrides], env=env, capture_output=True,
                          text=True, timeout=900)


def manifests(sweep_dir: Path) -> list[dict]:
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    return [json.loads((j / "manifest.json").read_text()) | {"_dir": str(j)} for j in jobs]


SWEEP = ("-m", "seed=0,1,2,3", "inputs.motion_bucket_id=60,180")


def test_mora_launcher_runs_each_distinct_node_once(tmp_path, tiny_models):
    result = mora(tmp_path, tiny_models, *SWEEP, "hydra/launcher=mora", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr
    jobs = manifests(tmp_path / "sweep")
    assert len(jobs) == 8
    # each job's report, and the sweep's index and contact sheet
    assert all((Path(job["_dir"]) / "report.html").is_file() for job in jobs)
    # a job's report, made from the manifest its job just wrote, is the one its manifest on disk gives
    written = {job["_dir"]: (Path(job["_dir"]) / "report.html").read_text() for job in jobs}
    assert written == {d: write_run_report(Path(d)).read_text() for d in written}
    assert (tmp_path / "sweep" / "index.html").is_file() and (tmp_path / "sweep" / "contact_sheet.png").is_file()
    for job in jobs:
        assert (Path(job["_dir"]) / "video.mp4").stat().st_size > 0
        assert job["launcher"] == "mora" and job["sweep_jobs"] == 8
    ran = [n["key"] for job in jobs for n in job["nodes"].values() if not n["cached"]]
    assert len(ran) == len(set(ran)), "a node ran twice"
    # a prompt and a keyframe per seed; motion, decode and evaluate per (seed, setting)
    assert len(set(ran)) == 4 + 4 + 8 + 8 + 8 == jobs[0]["sweep_nodes"]
    assert jobs[0]["sweep_model_loads"] == 3  # the prompt model, the image model, the video model: once each
    shared = [n for job in jobs for n in job["nodes"].values() if n.get("shared_from")]
    assert len(shared) == 8 * 5 - 32  # the second setting of each seed reuses its prompt and keyframe


def test_basic_launcher_gives_the_same_artifacts(tmp_path, tiny_models):
    merged = mora(tmp_path, tiny_models, *SWEEP, "hydra/launcher=mora", f"hydra.sweep.dir={tmp_path / 'm'}",
                  cache="c1")
    basic = mora(tmp_path, tiny_models, *SWEEP, "hydra/launcher=basic", f"hydra.sweep.dir={tmp_path / 'b'}",
                 cache="c2")
    assert merged.returncode == 0 and basic.returncode == 0, basic.stderr
    digests = [{k: v["digest"] for k, v in job["output_digests"].items()} for job in manifests(tmp_path / "m")]
    assert digests == [{k: v["digest"] for k, v in job["output_digests"].items()} for job in manifests(tmp_path / "b")]


def test_optuna_sweeper_minimises_a_numeric_output_through_the_mora_launcher(tmp_path, tiny_models):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = mora(tmp_path, tiny_models, "-m", "hydra/sweeper=optuna", "hydra/launcher=mora", "objective=dynamic_degree",
                  "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra.sweeper.direction=minimize",
                  "hydra.sweeper.sampler.seed=0", "inputs.motion_bucket_id=range(0,255)",
                  f"hydra.sweep.dir={tmp_path / 'opt'}")
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((tmp_path / "opt" / "optimization_results.yaml").read_text())
    # `inputs.NAME=` reaches Hydra as `++inputs.NAME=` (graph inputs are not config keys until set)
    assert set(best["best_params"]) == {"++inputs.motion_bucket_id"}
    jobs = [tmp_path / "opt" / f"{i}" for i in range(4)]
    motions = []
    for job in jobs:
        manifest = json.loads((job / "manifest.json").read_text())
        assert manifest["ok"]
        motions.append(float(json.loads((job / manifest["outputs"]["dynamic_degree"]).read_text())))
    assert best["best_value"] == pytest.approx(min(motions))  # what each job returned is its objective output
    # the sweep index highlights the objective and the job that minimised it
    index = (tmp_path / "opt" / "index.html").read_text()
    best_job = motions.index(min(motions))
    assert 'class="sortable objective default-sort" data-direction="asc">dynamic_degree</th>' in index
    assert f'<tr data-job="{best_job}" class="best">' in index
