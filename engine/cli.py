"""`mora`: the Hydra app. A thin `@hydra.main` that turns the composed config into a run.

Errors Mora can explain (bad graph, bad input file, missing model) are printed as a list of
problems with no traceback and exit with status 2 (validation) or 1 (a node failed); the
run directory is printed when the run ends.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from engine.config import register
from engine.errors import GraphError, MoraError

log = logging.getLogger("mora")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
register()


def graph_inputs(cfg: DictConfig) -> dict[str, Any]:
    """`inputs.*` plus the `prompt`/`seed` aliases."""
    values = OmegaConf.to_container(cfg.inputs, resolve=True) or {}
    assert isinstance(values, dict)
    for alias in ("prompt", "seed"):
        if cfg.get(alias) is not None:
            values[alias] = cfg[alias]
    return values


def run_from_config(cfg: DictConfig, run_dir: Path) -> int:
    """Run the configured graph; return the process exit status."""
    from engine import api
    from engine.store import Store, default_cache_dir

    path = api.graph_path(cfg.graph.name, cfg.graph_file)
    outputs = list(cfg.outputs) if cfg.outputs is not None else None
    defaults = OmegaConf.to_container(cfg.model.inputs, resolve=True)
    assert isinstance(defaults, dict)
    plan = api.load_plan(path, graph_inputs(cfg), outputs, defaults=defaults)
    cache_dir = Path(cfg.cache.dir).expanduser() if cfg.cache.dir else default_cache_dir()
    store = Store(cache_dir, salt=cfg.cache.salt, lock_timeout=cfg.cache.lock_timeout)
    os.environ.setdefault("MORA_MODELS_DIR", str(store.root / "models"))
    os.environ["MORA_MAX_RESIDENT_MODELS"] = str(cfg.runtime.max_resident_models)
    preset = OmegaConf.to_container(cfg.model, resolve=True)
    runtime = OmegaConf.to_container(cfg.runtime, resolve=True)
    assert isinstance(preset, dict) and isinstance(runtime, dict)
    outcome = api.run(plan, store=store, preset=preset, run_dir=run_dir, runtime=runtime,
                      video_format=cfg.video_format, quiet=cfg.quiet)
    report = outcome.report
    for finding in report.findings:
        print(f"mora: cache: {finding} (treated as a miss and recomputed)", file=sys.stderr)
    cached = sum(r.cached for r in report.records.values())
    print(f"mora: {len(report.records)} nodes, {cached} cached, {len(report.failed)} failed, "
          f"{len(report.skipped)} skipped, {report.model_loads} model loads, {report.seconds:.2f}s", file=sys.stderr)
    for node in report.failed:
        print(f"mora: node '{node}' failed: {report.records[node].error}", file=sys.stderr)
    print(f"mora: run directory: {run_dir}")
    return 1 if report.failed else 0


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    logging.getLogger("mora").setLevel(logging.INFO)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        status = run_from_config(cfg, run_dir)
    except GraphError as e:
        print(f"mora: invalid graph or inputs: {e}", file=sys.stderr)
        sys.exit(2)
    except MoraError as e:
        print(f"mora: error: {e}", file=sys.stderr)
        sys.exit(2)
    if status:
        sys.exit(status)


def main() -> None:
    """Console-script entry point."""
    _main()
