"""Refused before anything runs or is written: a taken run or sweep directory, and a sweep too large or empty;
a later batch refused for its directories, after which the earlier batches' jobs are indexed.

Real `mora` processes (mora.engine.frontends.preflight, mora.engine.rundir.refuse_taken).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mora_inproc import ECHO_GRAPH


@pytest.fixture
def mora(tmp_path, cache_dir, write_graph):
    graph = write_graph(ECHO_GRAPH)

    def run(*args: str) -> subprocess.CompletedProcess:
        flags = [a for a in args if a.startswith("-")]
        overrides = [a for a in args if not a.startswith("-")]
        return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", *flags,
                               f"graph_file={graph}", "runtime=local", "runtime.device=cpu", "quiet=true", *overrides],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    return run


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Error executing job" not in result.stderr, result.stderr
    assert all(w in result.stderr for w in words), result.stderr


def test_a_refused_second_run_leaves_the_first_runs_records_as_they_were(mora, tmp_path):
    assert mora("prompt=first run", "hydra.run.dir=same").returncode == 0
    before = _files(tmp_path / "same")
    _one_line(mora("prompt=second run", "seed=5", "hydra.run.dir=same"), "already holds another run")
    assert _files(tmp_path / "same") == before


def test_a_folder_of_the_users_own_files_is_refused_untouched(mora, tmp_path):
    mine = tmp_path / "mine"
    (mine / ".hydra").mkdir(parents=True)
    (mine / "out.txt").write_text("my words")
    (mine / ".hydra" / "config.yaml").write_text("mine: true\n")
    _one_line(mora("prompt=fox", "hydra.run.dir=mine"), "is not a Mora run's", "its files are kept")
    assert _files(mine) == {"out.txt": b"my words", ".hydra/config.yaml": b"mine: true\n"}


def test_a_folder_of_a_refused_runs_records_is_reused_but_another_jobs_outputs_are_not(mora, tmp_path):
    failed = mora("inputs.nosuch=1", "hydra.run.dir=run")  # refused by the graph after Hydra made the directory
    assert failed.returncode == 2 and (tmp_path / "run" / ".hydra").is_dir()
    again = mora("inputs.nosuch=1", "hydra.run.dir=run")
    assert again.returncode == 2 and "unknown graph input 'nosuch'" in again.stderr, again.stderr
    fixed = mora("prompt=fox", "hydra.run.dir=run")  # the corrected command: only records were there
    assert fixed.returncode == 0 and (tmp_path / "run" / "manifest.json").is_file(), fixed.stderr
    assert mora("inputs.nosuch=1", "hydra.run.dir=part").returncode == 2
    (tmp_path / "part" / "prompt.txt").write_text("a stopped run's output")  # more than records: kept
    before = _files(tmp_path / "part")
    _one_line(mora("prompt=fox", "hydra.run.dir=part"), "holds another job's run")
    assert _files(tmp_path / "part") == before


@pytest.mark.parametrize("launcher", ["mora", "basic"])
def test_a_second_sweep_into_a_sweep_directory_changes_nothing(mora, tmp_path, launcher):
    first = mora("-m", f"hydra/launcher={launcher}", "prompt=a,b", "hydra.sweep.dir=swx")
    assert first.returncode == 0, first.stderr
    before = _files(tmp_path / "swx")
    _one_line(mora("-m", f"hydra/launcher={launcher}", "prompt=a,c", "hydra.sweep.dir=swx"), "holds another sweep")
    _one_line(mora("-m", f"hydra/launcher={launcher}", "prompt=a,b", "hydra.sweep.dir=swx"),
              "already holds another run")
    assert _files(tmp_path / "swx") == before


@pytest.mark.parametrize("launcher", ["mora", "basic"])
def test_jobs_sharing_a_directory_are_refused_before_any_runs(mora, tmp_path, launcher):
    result = mora("-m", f"hydra/launcher={launcher}", "hydra.sweep.subdir=same", "prompt=a,b", "hydra.sweep.dir=sw")
    _one_line(result, "sweep jobs #0 and #1 would share the run directory")
    assert not (tmp_path / "sw" / "same").exists()


@pytest.mark.parametrize("launcher", ["mora", "basic"])
def test_an_oversized_sweep_is_refused_at_once_without_expanding_it(mora, tmp_path, launcher):
    result = mora("-m", f"hydra/launcher={launcher}", "seed=range(0,100000000)", "prompt=a,b", "hydra.sweep.dir=sw")
    _one_line(result, "more than 100,000 jobs", "seed=range(0,100000000)")
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("sweep", ["seed=range(0,-5)", "seed=range(1.0,0.5)", "seed=range(0,5,0)"])
def test_an_empty_sweep_is_refused(mora, tmp_path, sweep):
    _one_line(mora("-m", sweep, "hydra.sweep.dir=sw"), "has no values", sweep)
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("sweep", ["seed=range(0,inf)", "seed=range(0,nan)", "seed=range(0,5,-inf)"])
def test_a_range_without_end_is_refused_not_a_crash(mora, tmp_path, sweep):
    _one_line(mora("-m", sweep, "hydra.sweep.dir=sw"), "not a finite number", sweep)
    assert not (tmp_path / "sw").exists()


def test_a_range_longer_than_a_python_range_can_count_is_refused(mora, tmp_path):
    result = mora("-m", "seed=range(0,99999999999999999999)", "hydra.sweep.dir=sw")
    _one_line(result, "more than 100,000 jobs", "alone has more than 10**19 values")
    assert not (tmp_path / "sw").exists()


def test_huge_counts_are_exact_and_said_briefly():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mora.engine.errors import MoraError
    from mora.engine.frontends.preflight import refuse_size

    parse = OverridesParser.create().parse_overrides
    with pytest.raises(MoraError) as refused:
        refuse_size(parse(["y=range(0,1,1e-300)"]))
    assert "alone has more than 10**299 values" in str(refused.value) and len(str(refused.value)) < 200
    with pytest.raises(MoraError, match=r"alone has 10\*\*20 values"):
        refuse_size(parse(["y=range(0,100000000000000000000)"]))
    with pytest.raises(MoraError, match=r"alone has 1,000,001 values"):
        refuse_size(parse(["y=range(-1000000,1)"]))
    assert refuse_size(parse(["y=range(99999999999999999990,99999999999999999999,4)"])) == 3  # past sys.maxsize
    assert refuse_size(parse(["y=range(0,0.3,0.1)", "z=range(5,-5,-2.5)"])) == 3 * 4


def test_sweep_sizes_are_counted_not_expanded():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mora.engine.frontends.preflight import refuse_size

    parse = OverridesParser.create().parse_overrides
    assert refuse_size(parse(["seed=range(0,10,3)", "prompt=a,b", "x=1", "y=range(0,1,0.25)"])) == 4 * 2 * 4
    assert refuse_size(parse(["seed=range(0,100000)", "seed=1,2"])) == 2  # the later override of a key wins
    assert refuse_size(parse(["a=range(0,1000)", "b=range(0,100)"])) == 100_000


@pytest.mark.parametrize("args", [("--cfg=job", "--package=nosuch"), ("--package=x", "--cfg=job")])
def test_an_unknown_cfg_package_is_a_usage_error(mora, args):
    _one_line(mora(*args), "not found in the job config")


@pytest.mark.parametrize("cfg", ["job", "all"])
def test_cfg_resolve_shows_graph_inputs_as_the_run_uses_them(mora, cfg):
    more = ["inputs.x=${now:}"] if cfg == "job" else []  # `all` has the help, which checks inputs against the graph
    result = mora(f"--cfg={cfg}", "--resolve", "prompt=${oc.env:HOME}", *more)
    assert result.returncode == 0, result.stderr
    assert "prompt: ${oc.env:HOME}" in result.stdout, result.stdout
    assert "x: ${now:}" in result.stdout if more else result.stdout.count("${") == 1, result.stdout


@pytest.mark.parametrize(("overrides", "words"), [
    ((), ("needs objective=OUTPUT",)),
    (("objective=out", "hydra.sweeper.n_trials=0"), ("hydra.sweeper.n_trials", "at least 1, got 0")),
    (("objective=out", "hydra.sweeper.n_jobs=-1"), ("hydra.sweeper.n_jobs",)),
    (("objective=out", "hydra.sweeper.direction=sideways"), ("hydra.sweeper.direction", "'sideways'")),
])
def test_optuna_settings_that_cannot_work_are_refused_before_any_trial(mora, tmp_path, overrides, words):
    _one_line(mora("-m", "hydra/sweeper=optuna", "hydra/launcher=mora", "prompt=a,b", "hydra.sweep.dir=opt",
                   *overrides), *words)
    assert not (tmp_path / "opt").exists()


def test_a_run_directory_that_does_not_resolve_is_refused_by_mora_alone(mora, tmp_path):
    """Any failure in the preflight refuses the run: Hydra's callback runner would warn and go on past the check."""
    result = mora("hydra.run.dir=x${oc.env:MORA_TEST_NO_SUCH_VARIABLE}")
    _one_line(result, "invalid configuration", "MORA_TEST_NO_SUCH_VARIABLE", "hydra.run.dir")
    assert result.stderr.startswith("mora: ") and "Warning" not in result.stderr, result.stderr
    assert not list(tmp_path.glob("x*"))


def test_a_failure_inside_the_preflight_stops_the_run_before_hydra_writes(capsys, write_graph, tmp_path, cache_dir,
                                                                            monkeypatch):
    from mora_inproc import run_mora

    def broken(*args, **kwargs):
        raise RuntimeError("the check itself broke")

    monkeypatch.setattr("mora.engine.frontends.preflight.refuse_taken", broken)
    result = run_mora(capsys, f"graph_file={write_graph(ECHO_GRAPH)}", "runtime=local", "quiet=true", "prompt=fox",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 1 and "the check itself broke" in result.err, result.err
    assert not (tmp_path / "run").exists()


def test_a_run_directory_that_cannot_be_read_is_refused_not_skipped(mora, tmp_path):
    """Hydra's callback runner turns an error into a warning and goes on: an OSError must still refuse the run."""
    _one_line(mora(f"hydra.run.dir={'a' * 300}"), "File name too long", "hydra.run.dir")


@pytest.mark.parametrize("launcher", ["mora", "basic"])
def test_a_later_batch_refused_for_its_directory_leaves_the_earlier_batches_jobs_indexed(mora, tmp_path, launcher):
    """Batches of two: jobs #0 and #1 run; #2 would write into #0's directory, so the sweep ends refused, indexed."""
    result = mora("-m", f"hydra/launcher={launcher}", "hydra.sweeper.max_batch_size=2", "prompt=a,b,a",
                  "hydra.sweep.subdir=${prompt}", "hydra.sweep.dir=sw")
    _one_line(result, f"the run directory {tmp_path / 'sw' / 'a'} already holds another run")
    assert [line for line in result.stderr.splitlines() if line.startswith("mora:")] == \
        result.stderr.strip().splitlines()[-1:]  # the jobs' summaries, then the refusal alone on its line
    sweep = tmp_path / "sw"
    assert (sweep / "a" / "out.txt").read_text() == "A a" and (sweep / "b" / "out.txt").read_text() == "A b"
    assert f"mora: sweep index: {Path('sw') / 'index.html'}" in result.stdout
    assert re.findall(r'<tr data-job="([^"]+)"', (sweep / "index.html").read_text()) == ["a", "b"]
