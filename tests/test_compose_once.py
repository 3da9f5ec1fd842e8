"""A single run composes its config once, and every other Hydra way in still goes Hydra's own way.

Each case runs `mora` in this process (tests/mora_inproc.py) and counts the compositions made by
Hydra's config loader. A run started with `-r` (`--run`) takes Hydra's own path (two
compositions), so its `.hydra` files are what the one-composition run must write.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra
from mora_inproc import ECHO_GRAPH, run_mora


@pytest.fixture
def compositions(monkeypatch) -> Iterator[list[str]]:
    """The run mode of every composition Hydra's loader makes, in order."""
    made: list[str] = []
    compose = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        made.append(str(kwargs.get("run_mode", args[2] if len(args) > 2 else None)))
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
    yield made


@pytest.fixture
def echo(write_graph, cache_dir) -> list[str]:
    return [f"graph_file={write_graph(ECHO_GRAPH)}", "runtime=local", "runtime.device=cpu", "quiet=true"]


def hydra_files(run_dir: Path) -> dict[str, object]:
    return {name: yaml.safe_load((run_dir / ".hydra" / name).read_text().replace(str(run_dir), "RUN_DIR"))
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}


def test_a_single_run_composes_once_and_writes_what_hydras_two_compositions_write(capsys, tmp_path, echo,
                                                                                   compositions):
    once = run_mora(capsys, *echo, "prompt=fox", f"hydra.run.dir={tmp_path / 'once'}")
    assert once.status == 0, once.err
    assert compositions == ["RunMode.RUN"]
    assert (tmp_path / "once" / "out.txt").read_text() == "A fox"
    compositions.clear()
    hydras = run_mora(capsys, "-r", *echo, "prompt=fox", f"hydra.run.dir={tmp_path / 'twice'}")
    assert hydras.status == 0, hydras.err
    assert compositions == ["RunMode.MULTIRUN", "RunMode.RUN"]  # get_mode's, then the run's
    files = hydra_files(tmp_path / "once")
    assert files == hydra_files(tmp_path / "twice")
    assert "hydra.mode=RUN" in files["hydra.yaml"]["hydra"]["overrides"]["hydra"]
    assert files["hydra.yaml"]["hydra"]["mode"] == "RUN"
    assert Hydra.get_mode.__module__ == "hydra._internal.hydra"  # Hydra's own again once `mora` returned


def test_sweeps_and_sweep_values_without_m_still_go_hydras_way(capsys, tmp_path, echo, compositions):
    swept = run_mora(capsys, "-m", *echo, "prompt=fox,owl", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert swept.status == 0, swept.err
    assert sorted(p.read_text() for p in (tmp_path / "sweep").glob("*/out.txt")) == ["A fox", "A owl"]
    refused = run_mora(capsys, *echo, "runtime.retries=0,1", f"hydra.run.dir={tmp_path / 'run'}")
    assert refused.status == 2 and refused.clean
    assert "Ambiguous value for argument 'runtime.retries=0,1'" in refused.err
    assert not (tmp_path / "run").exists()
    by_config = run_mora(capsys, *echo, "prompt=cat", "hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path / 'm'}")
    assert by_config.status == 0, by_config.err
    assert [p.read_text() for p in (tmp_path / "m").glob("*/out.txt")] == ["A cat"]


def test_a_bad_override_is_refused_as_before_and_cfg_still_shows_the_config(capsys, echo):
    bad = run_mora(capsys, *echo, "runtime=nowhere")
    assert bad.status == 2 and bad.clean
    assert "Could not find 'runtime/nowhere'" in bad.err
    shown = run_mora(capsys, "--cfg", "job", *echo, "prompt=fox")
    assert shown.status == 0, shown.err
    assert yaml.safe_load(shown.out)["prompt"] == "fox"
