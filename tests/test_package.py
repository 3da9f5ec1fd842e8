"""The package as a user gets it: a wheel with config, graphs and schema, run from outside any checkout.

The wheel is built from the checkout's tracked and unignored files (not a stale build/ folder),
installed into a fresh virtual environment that sees the system's torch and friends, and run
with HOME pointed at a temporary directory: the cache, tiny models included, must land in the
user cache directory, never in the checkout or in site-packages.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mora.engine.cache.store import default_cache_dir, source_checkout

ROOT = Path(__file__).resolve().parent.parent


def test_a_checkout_keeps_its_cache_in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MORA_CACHE_DIR", raising=False)
    assert source_checkout() == ROOT
    assert default_cache_dir() == ROOT / "cache"


def test_the_environment_wins_over_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MORA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == (tmp_path / "elsewhere").resolve()


def _copy_sources(dest: Path) -> Path:
    """The files git would ship (tracked or new, not ignored), copied so the build cannot see build/ leftovers."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slow
def test_the_wheel_runs_outside_the_checkout_and_caches_in_the_user_cache_dir(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files ship")
    # 1. build the wheel from the shipped files
    src = _copy_sources(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("mora_dag-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("mora/conf/config.yaml", "mora/conf/model/tiny.yaml", "mora/conf/runtime/pool.yaml",
                   "mora/conf/cache/default.yaml", "mora/conf/graph/text_to_video.yaml",
                   "mora/graphs/text_to_video.yaml", "mora/graphs/mora-graph.schema.json",
                   "hydra_plugins/mora_launcher/mora_launcher.py", "mora/engine/frontends/cli.py", "mora/nodes/zoo/__init__.py"):
        assert needed in names, f"{needed} is not in the wheel"
    assert not any(n.split("/")[0] in ("engine", "nodes", "conf", "graphs") for n in names), "generic top-level names"

    # 2. a fresh venv that sees this test's own packages (torch is not downloaded again; the base interpreter's, which
    # --system-site-packages would give, may have none of them) but imports mora from the wheel: a .pth file puts
    # them after the venv's own site-packages, without running the .pth files there (the checkout's editable install)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (site,) = (venv / "lib").glob("python*/site-packages")
    outer = dict.fromkeys(sysconfig.get_path(key) for key in ("purelib", "platlib"))
    (site / "outer_packages.pth").write_text("".join(f"{path}\n" for path in outer))
    bin_ = venv / "bin"
    # the venv's own old setuptools would hide the system's, which torch's requirements need
    subprocess.run([bin_ / "python", "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True,
                   capture_output=True)
    subprocess.run([bin_ / "python", "-m", "pip", "install", "-q", "--no-index", str(wheel)], check=True,
                   capture_output=True)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MORA_", "XDG_", "PYTHON", "HF_")) and k != "VIRTUAL_ENV"}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1")
    where = subprocess.run([bin_ / "python", "-c", "import mora.engine; print(mora.engine.__file__)"], cwd=work,
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"mora imports from {where}, not from the installed wheel"

    # 3. the default run, from a directory outside the checkout
    run = subprocess.run([bin_ / "mora", "hydra.run.dir=out"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    cache = home / ".cache" / "mora"
    assert (cache / "index").is_dir() and any((cache / "objects").rglob("*.*"))
    assert (work / "out" / "manifest.json").is_file()
    # the default preset's models ship in the wheel; the tiny ones are built, and into the user cache dir
    tiny = subprocess.run([bin_ / "mora", "model=tiny", "hydra.run.dir=out_tiny"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert tiny.returncode == 0, tiny.stderr
    assert any((cache / "models" / "tiny").iterdir()), "tiny models were not built in the user cache dir"
    assert not (work / "cache").exists() and not list(venv.rglob("site-packages/mora/cache"))

    # 4. mora-admin from the same place
    (work / "g.yaml").write_text("inputs: {prompt: {type: text, default: fox}}\n"
                                 "nodes: {t: {agent: text_template, in: {text: {input: prompt}}}}\n"
                                 "outputs: {out: {from: t.text}}\n")
    admin = subprocess.run([bin_ / "mora-admin", "validate", "g.yaml"], cwd=work, env=env, capture_output=True,
                           text=True)
    assert admin.returncode == 0 and "ok" in admin.stdout, admin.stderr
