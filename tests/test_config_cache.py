"""A run's composed config is kept by content: read back when nothing it was made from changed, composed again otherwise.

The end-to-end case runs `mora` twice in this process (tests/mora_inproc.py) and counts Hydra's
compositions; the others compose a config directory of their own through Hydra's loader, edit
what composition reads (a file, a new file, the ConfigStore, a copied environment variable) and
check the next composition sees it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from mora_inproc import ECHO_GRAPH, run_mora
from omegaconf import DictConfig, OmegaConf

from mora.engine.frontends.config_cache import composed


@pytest.fixture
def compositions(monkeypatch) -> Iterator[list[list[str]]]:
    """The overrides of every composition Hydra's config loader makes, in order."""
    made: list[list[str]] = []
    compose = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        made.append(list(kwargs.get("overrides", args[1] if len(args) > 1 else [])))
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
    yield made


def hydra_files(run_dir: Path) -> dict[str, object]:
    return {name: yaml.safe_load((run_dir / ".hydra" / name).read_text().replace(str(run_dir), "RUN_DIR"))
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}


def test_the_same_command_again_reads_its_config_back_and_writes_the_same_files(capsys, tmp_path, monkeypatch,
                                                                                write_graph, cache_dir,
                                                                                compositions, kept_configs):
    monkeypatch.chdir(tmp_path)  # the default run directory, outputs/DATE/TIME-PID, lands here
    command = [f"graph_file={write_graph(ECHO_GRAPH)}", "runtime=local", "runtime.device=cpu", "quiet=true",
               "prompt=fox"]
    first = run_mora(capsys, *command)
    assert first.status == 0, first.err
    assert len(compositions) == 1 and len(list(kept_configs.glob("*.pickle"))) == 1
    time.sleep(1.05)  # the same process id: only the time of day tells the runs' default directories apart
    again = run_mora(capsys, *command)
    assert again.status == 0, again.err
    assert len(compositions) == 1  # read back, not composed
    runs = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 2, "the kept config resolves ${now:...} afresh: each run has its own directory"
    assert [(r / "out.txt").read_text() for r in runs] == ["A fox", "A fox"]
    assert hydra_files(runs[0]) == hydra_files(runs[1])
    other = run_mora(capsys, *command[:-1], "prompt=owl", f"hydra.run.dir={tmp_path / 'owl'}")
    assert other.status == 0 and len(compositions) == 2  # other overrides: composed


@pytest.fixture
def conf(tmp_path) -> Iterator[tuple[Path, ConfigLoaderImpl]]:
    """A config directory (config.yaml choosing colour: red) and the Hydra loader composing from it."""
    folder = tmp_path / "conf"
    (folder / "colour").mkdir(parents=True)
    (folder / "config.yaml").write_text("defaults:\n  - colour: red\n  - _self_\nsize: 1\n")
    (folder / "colour" / "red.yaml").write_text("rgb: [255, 0, 0]\n")
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        yield folder, GlobalHydra.instance().hydra.config_loader  # type: ignore[union-attr]


def test_editing_or_adding_a_config_file_composes_again(conf, compositions):
    folder, loader = conf
    assert composed(loader, "config", ["size=2"]).size == 2
    kept = composed(loader, "config", ["size=2"])
    assert len(compositions) == 1
    assert isinstance(kept, DictConfig) and list(kept.colour.rgb) == [255, 0, 0]
    assert OmegaConf.is_struct(kept) and kept.hydra.runtime.choices.colour == "red"
    (folder / "colour" / "red.yaml").write_text("rgb: [200, 0, 0]\n")  # same size, other bytes
    assert list(composed(loader, "config", ["size=2"]).colour.rgb) == [200, 0, 0]
    assert len(compositions) == 2
    (folder / "colour" / "blue.yaml").write_text("rgb: [0, 0, 255]\n")  # a new option: the group changed
    composed(loader, "config", ["size=2"])
    assert len(compositions) == 3
    composed(loader, "config", ["size=2"])
    assert len(compositions) == 3


def test_a_changed_schema_in_the_config_store_composes_again(conf, compositions):
    _, loader = conf
    store = ConfigStore.instance()
    composed(loader, "config", [])
    store.store(group="colour", name="green", node={"rgb": [0, 255, 0]})
    try:
        assert list(composed(loader, "config", ["colour=green"]).colour.rgb) == [0, 255, 0]
        store.store(group="colour", name="green", node={"rgb": [0, 128, 0]})
        assert list(composed(loader, "config", ["colour=green"]).colour.rgb) == [0, 128, 0]
        assert len(compositions) == 3
    finally:
        del store.repo["colour"]


def test_a_copied_environment_variable_is_read_again(conf, compositions, monkeypatch):
    folder, loader = conf
    (folder / "config.yaml").write_text("defaults:\n  - _self_\nhydra:\n  job:\n    env_copy: [MORA_TEST_COPIED]\n")
    monkeypatch.setenv("MORA_TEST_COPIED", "one")
    assert composed(loader, "config", []).hydra.job.env_set.MORA_TEST_COPIED == "one"
    composed(loader, "config", [])
    assert len(compositions) == 1
    monkeypatch.setenv("MORA_TEST_COPIED", "two")
    assert composed(loader, "config", []).hydra.job.env_set.MORA_TEST_COPIED == "two"
    assert len(compositions) == 2


def test_a_config_that_widens_its_search_path_is_not_kept(conf, compositions, tmp_path, kept_configs):
    folder, loader = conf
    (tmp_path / "more").mkdir()
    (folder / "config.yaml").write_text(f"hydra:\n  searchpath: [file://{tmp_path / 'more'}]\nsize: 1\n")
    composed(loader, "config", [])
    composed(loader, "config", [])
    assert len(compositions) == 2 and not list(kept_configs.glob("*.pickle"))


def test_a_defaults_list_that_interpolates_is_composed_every_time(conf, compositions, monkeypatch, kept_configs):
    folder, loader = conf
    (folder / "colour" / "blue.yaml").write_text("rgb: [0, 0, 255]\n")
    (folder / "config.yaml").write_text("defaults:\n  - colour: ${oc.env:MORA_TEST_COLOUR}\n  - _self_\n")
    monkeypatch.setenv("MORA_TEST_COLOUR", "red")
    assert composed(loader, "config", []).hydra.runtime.choices.colour == "red"
    monkeypatch.setenv("MORA_TEST_COLOUR", "blue")
    assert composed(loader, "config", []).hydra.runtime.choices.colour == "blue"
    assert len(compositions) == 2 and not list(kept_configs.glob("*.pickle"))


def test_a_damaged_entry_or_a_folder_others_can_write_is_a_miss(conf, compositions, kept_configs):
    _, loader = conf
    composed(loader, "config", [])
    [entry] = kept_configs.glob("*.pickle")
    entry.write_bytes(b"not a pickle")
    assert composed(loader, "config", []).size == 1
    assert len(compositions) == 2 and entry.read_bytes() != b"not a pickle"  # composed and kept again
    os.chmod(kept_configs, 0o777)
    composed(loader, "config", [])
    assert len(compositions) == 3  # never read from a folder another user could have written


def test_a_source_too_large_to_digest_is_composed_every_time(conf, compositions, monkeypatch, kept_configs):
    _, loader = conf
    monkeypatch.setattr("mora.engine.frontends.config_cache.MAX_ENTRIES", 2)  # conf/ holds three entries
    composed(loader, "config", [])
    composed(loader, "config", [])
    assert len(compositions) == 2 and not list(kept_configs.glob("*.pickle"))
