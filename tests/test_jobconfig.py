"""A sweep's job configs composed once (mora.engine.frontends.jobconfig) equal Hydra's full composition of each job."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict

from mora.engine.frontends.config import register, register_launcher
from mora.engine.frontends.jobconfig import Composer, parse_plain_input

GRAPH = Path(__file__).parents[1] / "bench" / "graphs" / "three_text.yaml"
BASE = [f"graph_file={GRAPH}", "prompt=fox"]


@pytest.fixture(scope="module")
def hydra_run() -> Iterator[tuple]:
    """Hydra's config loader and the master config of a multirun, as a sweeper and launcher get them."""
    register()
    register_launcher()
    with initialize_config_module("mora.conf", version_base="1.3"):
        master = compose("config", BASE, return_hydra_config=True)
        yield GlobalHydra.instance().config_loader(), master


def full(loader, master, overrides: list[str], idx: int) -> dict:
    cfg = loader.load_sweep_config(master, overrides)
    with open_dict(cfg):
        cfg.hydra.job.id = idx
        cfg.hydra.job.num = idx
    return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)


@pytest.mark.parametrize("overrides", [
    [*BASE, "++inputs.n=3"],
    [*BASE, "prompt='a fox, in the snow'", "seed=7", "++inputs.n=2.5"],
    [*BASE, "++inputs.words=[a,b]", "++inputs.n=1"],
    [*BASE, "++inputs.n=1", "model=random", "cache.salt=x"],  # config-changing overrides: their own template
    [*BASE, "cache.salt=${inputs.n}", "++inputs.n=4"],  # the config reads an input: composed in full
    [*BASE, "++inputs={n: 5, word: w}", "~prompt"],
])
def test_a_job_config_is_the_config_hydra_composes(hydra_run, overrides):
    loader, master = hydra_run
    composer = Composer(loader, master)
    composer.job([*BASE, "++inputs.n=0"])  # another job first: its template is reused where it can be
    got = OmegaConf.to_container(composer.bind(composer.job(overrides), 6), resolve=False, enum_to_str=True)
    assert got == full(loader, master, overrides, 6)


def test_jobs_bound_one_after_another_each_hold_their_own_config(hydra_run):
    """Binding assigns only the input keys that change from the job bound before: each job still reads as composed."""
    loader, master = hydra_run
    composer = Composer(loader, master)
    sequence = [[*BASE, "++inputs.n=0", "~prompt"], [*BASE, "++inputs.n=1"], [*BASE, "++inputs.n=1", "seed=3"],
                [*BASE, "prompt=cat", "++inputs={n: 2}"], [*BASE, "++inputs.n=0", "~prompt"], [*BASE, "seed=5"]]
    jobs = [composer.job(o) for o in sequence]
    assert len({id(j.template) for j in jobs}) == 1
    for i in [0, 1, 2, 3, 4, 5, 1, 4, 0]:
        got = OmegaConf.to_container(composer.bind(jobs[i], i), resolve=False, enum_to_str=True)
        assert got == full(loader, master, sequence[i], i), sequence[i]


def test_a_bound_input_resolves_against_the_jobs_config(hydra_run):
    """An input's node moves into the shared config when bound: its interpolations read that config, job after job."""
    loader, master = hydra_run
    composer = Composer(loader, master)
    sequence = [[*BASE, f"++inputs.n={i}", "++inputs.where=${cache.dir}", "++inputs.who=${prompt}"] for i in range(3)]
    jobs = [composer.job(o) for o in sequence]
    for i in [0, 1, 2, 0]:
        bound = composer.bind(jobs[i], i)
        want = loader.load_sweep_config(master, sequence[i])
        assert OmegaConf.to_container(bound.inputs, resolve=True) == OmegaConf.to_container(want.inputs, resolve=True)
        assert bound.inputs.n == i and bound.inputs.who == "fox"


def test_jobs_share_one_composition_unless_their_config_differs(hydra_run):
    loader, master = hydra_run
    composer = Composer(loader, master)
    jobs = [composer.job([*BASE, f"++inputs.n={i}", f"seed={i}"]) for i in range(5)]
    other = composer.job([*BASE, "++inputs.n=1", "model=random"])
    assert len({id(j.template) for j in jobs}) == 1 and other.template is not jobs[0].template
    assert [j.graph_inputs() for j in jobs[:2]] == [{"n": 0, "prompt": "fox", "seed": 0},
                                                    {"n": 1, "prompt": "fox", "seed": 1}]
    reads = [composer.job([*BASE, "cache.salt=${seed}", f"seed={i}"]) for i in range(2)]
    assert reads[0].template is not reads[1].template


PARSER = OverridesParser.create()
KEYS = st.sampled_from(["inputs.n", "inputs", "prompt", "seed", "inputs.a_b", "inputs.N2", "model", "inputs.x.y",
                        "inputs.-a", "hydra.job.num", "inputs.n@pkg"])
VALUES = st.one_of(st.integers(-10**30, 10**30).map(str), st.floats().map(repr), st.floats().map(str),
                   st.from_regex(r"[+-]?[0-9]{0,3}\.?[0-9]{0,3}([eE][+-]?[0-9]{1,3})?", fullmatch=True),
                   st.sampled_from(["0", "-0", "007", "1_000", "+3", "1.5", "1e3", "inf", "-inf", "NaN", "TRUE",
                                    "false", "Null", "nulls", "fox", "_x", "a-b", "a b", " fox", "fox ", "'fox'",
                                    "[1,2]", "{a: 1}", "${seed}", "a,b", "range(0,3)", "é", "", "\\x", "x.y"]),
                   st.from_regex(r"[A-Za-z0-9_+\-. ]{0,6}", fullmatch=True))


@settings(max_examples=400, deadline=None)
@given(prefix=st.sampled_from(["", "+", "++", "~"]), key=KEYS, value=VALUES)
def test_a_plain_input_override_reads_as_hydras_parser_reads_it(prefix, key, value):
    line = f"{prefix}{key}={value}"
    fast = parse_plain_input(line)
    if fast is None:
        return
    assert fast == PARSER.parse_overrides([line])[0]
    assert type(fast.value()) is type(PARSER.parse_overrides([line])[0].value())  # 1 and True compare equal


def test_the_plain_forms_take_the_fast_path_and_the_rest_do_not():
    assert [parse_plain_input(x) is not None for x in ["++inputs.n=12", "prompt=fox", "seed=-3", "inputs.w=a_b",
                                                       "++inputs.x=-2.744066509467129", "inputs.x=1e-05"]] == [True] * 6
    assert [parse_plain_input(x) for x in ["seed=true", "inputs.n=1.", "prompt='a fox'", "model=random", "seed=inf",
                                           "inputs.n=1_0", "inputs.n=a-b", "prompt=${x}", "~seed"]] == [None] * 9


def test_a_checked_batch_is_composed_once(hydra_run):
    loader, master = hydra_run
    composer = Composer(loader, master)
    batch = [[*BASE, f"++inputs.n={i}"] for i in range(3)]
    composer.check(batch)  # the sweeper's check
    kept = dict(composer.checked)
    got = [composer.job(o) for o in batch]  # the launcher's
    assert all(g is kept[tuple(o)] for g, o in zip(got, batch)) and [g.graph_inputs()["n"] for g in got] == [0, 1, 2]
    again = composer.job(batch[1])  # not checked now: composed anew, alike
    assert again is not got[1] and again.graph_inputs() == got[1].graph_inputs() and not composer.checked


@pytest.mark.parametrize("bad", ["seed=abc", "+prompt=again"])
def test_a_bad_input_override_is_refused_as_hydra_refuses_it(hydra_run, bad):
    loader, master = hydra_run
    with pytest.raises(ConfigCompositionException):
        loader.load_sweep_config(master, [*BASE, bad])
    with pytest.raises(ConfigCompositionException):
        Composer(loader, master).job([*BASE, bad])


def sweep(tmp: Path, tag: str, *hydra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "-m", *BASE,
                           "inputs.n=0,1,2", "runtime=local", "runtime.device=cpu", "quiet=true",
                           f"cache.dir={tmp / tag / 'cache'}", f"hydra.sweep.dir={tmp / tag / 'sweep'}", *hydra],
                          cwd=tmp, capture_output=True, text=True, timeout=300, check=False)


def test_a_sweep_gives_hydras_job_configs_and_outputs(tmp_path):
    fast = sweep(tmp_path, "fast", "hydra/launcher=mora")  # Mora's sweeper is the default
    hydra = sweep(tmp_path, "hydra", "hydra/launcher=basic", "hydra/sweeper=basic")
    assert fast.returncode == 0, fast.stderr
    assert hydra.returncode == 0, hydra.stderr
    for job in range(3):
        dirs = [tmp_path / tag / "sweep" / str(job) for tag in ("fast", "hydra")]
        assert (dirs[0] / "caption.txt").read_text() == f"A fox #{job}, in digital world style, Minecraft"
        assert (dirs[0] / "caption.txt").read_text() == (dirs[1] / "caption.txt").read_text()
        configs = [yaml.safe_load((d / ".hydra" / "config.yaml").read_text()) for d in dirs]
        assert configs[0] == {**configs[1], "cache": {**configs[1]["cache"], "dir": configs[0]["cache"]["dir"]}}
        assert configs[0]["inputs"] == {"n": job} and configs[0]["prompt"] == "fox"
        overrides = [yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) for d in dirs]
        assert overrides[0] == [o.replace("/hydra/", "/fast/") for o in overrides[1]]
        hydras = [yaml.safe_load((d / ".hydra" / "hydra.yaml").read_text())["hydra"] for d in dirs]
        assert hydras[0]["job"]["num"] == hydras[1]["job"]["num"] == job
        assert hydras[0]["runtime"]["output_dir"] == str(dirs[0])
        assert "3 nodes" in (dirs[0] / "mora.log").read_text()
    index = (tmp_path / "fast" / "sweep" / "index.html").read_text()  # texts only: no sheet, and no link to one
    assert "3 jobs" in index and "contact_sheet" not in index
    assert not (tmp_path / "fast" / "sweep" / "contact_sheet.png").exists()
