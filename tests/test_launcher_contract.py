"""Hydra's own launcher conformance suites, run against hydra/launcher=mora as Hydra's launcher plugins run them.

The suites' jobs are plain Hydra apps, not Mora graphs: the Mora launcher must run them as the
basic launcher would. Mora's own jobs are held to the same contract in tests/test_cli_hydra.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

import hydra_plugins.mora_launcher
from hydra_plugins.mora_launcher.mora_launcher import MoraLauncher
from mora.engine.frontends.config import register_launcher


@pytest.fixture(autouse=True)
def hydras_default_version_base() -> Iterator[None]:
    """Hydra keeps the version base of the last app set up in this process; Mora's in-process runs set 1.3.

    The suites' apps give none, so they get Hydra's default, as in a fresh process."""
    from hydra import version

    base = version.VersionBase.instance()
    saved = base.version_base
    base.version_base = version._UNSPECIFIED_
    yield
    base.version_base = saved


@pytest.fixture(scope="module", autouse=True)
def plugin_visible_to_child_pythons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The integration suite starts Python apps in temporary directories: they must find the plugin there.

    Installed from a wheel they do. An editable install by setuptools >= 64 exposes `hydra_plugins`
    through an import hook that Hydra 1.3's plugin scan (pkgutil) cannot list (hydra#2359), so the
    children get a directory holding only a link to this checkout's plugin package.
    """
    plugin = Path(hydra_plugins.mora_launcher.__file__).parent
    root = tmp_path_factory.mktemp("plugin_path")
    (root / "hydra_plugins").mkdir()
    (root / "hydra_plugins" / plugin.name).symlink_to(plugin, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    register_launcher()  # in this process, as the mora app does, whatever the working directory
    yield
    mp.undo()


def test_discovery(tmp_path: Path) -> None:
    """Hydra's own plugin scan finds the launcher where the plugin package is on the path (as from a wheel)."""
    code = ("from hydra.core.plugins import Plugins; from hydra.plugins.launcher import Launcher; "
            "print([c.__name__ for c in Plugins.instance().discover(Launcher)])")
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert MoraLauncher.__name__ in found.stdout


@pytest.mark.parametrize("launcher_name, overrides", [("mora", [])])
class TestMoraLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    ({}, ["-m", "hydra/launcher=mora", "hydra/hydra_logging=hydra_debug", "hydra/job_logging=disabled"]),
])
class TestMoraLauncherIntegration(IntegrationTestSuite):
    pass
