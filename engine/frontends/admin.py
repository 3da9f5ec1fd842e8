"""`mora-admin`: validate and draw graphs, list agents, print the graph JSON Schema, manage the cache.

    mora-admin validate FILE [-i NAME=VALUE ...] [-m PRESET]  check a graph without running it, as `mora` would
    mora-admin agents [NAME]                       agents with their ports and parameters
    mora-admin draw FILE [-o OUT.dot|OUT.png]      the expanded graph as DOT (PNG via graphviz)
    mora-admin schema                              JSON Schema of graph files (for editors)
    mora-admin cache stats|list|verify|gc          the content-addressed cache
    mora-admin models [model=PRESET ...] [--download]  a preset's models, their sizes and presence; fetch them
    mora-admin report DIR                          rebuild report.html (run) or index.html (sweep)
    mora-admin workers start|status|stop           standing workers: models kept loaded and compiled between runs
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mora.engine.errors import InputError, ModelNotFoundError, MoraError, did_you_mean
from mora.engine.execution import models
from mora.engine.execution.model_loader import model_loader
from mora.engine.frontends import workers
from mora.engine.frontends.guard import guarded
from mora.engine.userfiles import expand_user

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mora.engine.cache.store import Store
    from mora.engine.graph.plan import Plan
    from mora.engine.ports import PortType

UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _finite(value: float, text: str, what: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{what} must be a finite, non-negative number, got {text!r}")
    return value


def parse_size(text: str) -> int:
    """'50G', '512m', '1000' (bytes) as a byte count; argparse reports anything else."""
    t = text.strip().lower().rstrip("b")
    unit = t[-1] if t and t[-1] in UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 50G, 512M or 1000") from None
    return int(_finite(value * UNITS[unit], text, "a size"))


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s' or '45' (seconds) as seconds; argparse reports anything else."""
    t = text.strip().lower()
    unit = t[-1] if t and t[-1] in AGES else "s"
    try:
        value = float(t[:-1] if t and t[-1] in AGES else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 30d, 12h, 90m or 45s") from None
    return _finite(value * AGES[unit], text, "an age")


def _inputs(pairs: list[str]) -> dict[str, object]:
    """NAME=VALUE pairs; each value is text, read by the input's declared type (mora.engine.graph.validate.from_text)."""
    values: dict[str, object] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise MoraError(f"--input needs NAME=VALUE, got {pair!r}")
        values[name] = raw
    return values


def folder_arg(text: str) -> str:
    """A `--dir` folder: never empty (an unset shell variable must not mean the default cache), `~` expanded."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty (an unset shell variable?); give a folder, or leave --dir out for "
                                         "the default")
    try:
        return str(expand_user(text, "folder"))
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _plan(args: argparse.Namespace, cfg: DictConfig | None = None) -> Plan:
    """The plan `mora graph_file=FILE [model=PRESET]` would run: the same file, and the preset's inputs as defaults
    (from `cfg`, that command's config, when given)."""
    from mora.engine.frontends import job
    from mora.engine.frontends.api import graph_path, load_plan

    return load_plan(graph_path(None, args.file), _inputs(args.input), standalone=True,
                     defaults=job.preset_inputs(cfg if cfg is not None else _config(args.model)))


def _config(model: str | None) -> DictConfig:
    """The config `mora [model=PRESET]` composes (the default preset's, or PRESET's)."""
    return compose_config([f"model={model}"] if model else [])


def cmd_validate(args: argparse.Namespace) -> int:
    """What a run checks before it starts: the config, the graph and its inputs, input files and each node's model."""
    from omegaconf import OmegaConf

    from mora.engine.frontends.api import check_input_files, graph_path
    from mora.engine.frontends.config import validate
    from mora.engine.graph.spec import read_graph_file

    cfg = _config(args.model)
    validate(cfg)
    plan = _plan(args, cfg)
    preset = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(preset, dict)
    check_input_files(plan, preset)
    required = [name for name in read_graph_file(graph_path(None, args.file)).inputs if name not in plan.inputs]
    needs = f"; a run needs {', '.join(f'inputs.{n}=...' for n in required)}" if required else ""
    print(f"{args.file}: ok ({len(plan.nodes)} agent nodes after expansion, outputs: {', '.join(plan.outputs)}{needs})")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from mora.engine.graph.registry import default_registry

    registry = default_registry()
    chosen = registry.get(args.name) if args.name else None
    if args.name and chosen is None:
        raise MoraError(f"unknown agent type {args.name!r}" + did_you_mean(args.name, registry.names()))
    for agent in [chosen] if chosen else registry:
        model = f", model role: {agent.model_role}" if agent.model_role else ""
        print(f"{agent.type} (v{agent.version}{model}) - {agent.description}")
        for port in agent.inputs:
            opt = "" if port.required else ", optional"
            print(f"    in  {port.name}: {port.type.value}{opt}  {port.description}")
        for port in agent.outputs:
            print(f"    out {port.name}: {port.type.value}  {port.description}")
        for p in agent.params:
            bounds = "".join([f" min={p.min}" if p.min is not None else "", f" max={p.max}" if p.max is not None else "",
                              f" choices={list(p.choices)}" if p.choices else "",
                              f" multiple_of={p.multiple_of}" if p.multiple_of else "",
                              " run-only" if p.run_only else ""])
            print(f"    param {p.name}: {p.type.__name__} = {p.default!r}{bounds}  {p.description}")
    return 0


def to_dot(plan) -> str:  # type: ignore[no-untyped-def]
    lines = ["digraph mora {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for node_id, node in plan.nodes.items():
        lines.append(f'  "{node_id}" [label="{node_id}\\n({node.agent.type})"];')
    for u, v in plan.dag.edges:
        lines.append(f'  "{u}" -> "{v}";')
    for name, src in plan.outputs.items():
        lines.append(f'  "out:{name}" [shape=ellipse, label="{name}"];')
        if src.node:
            lines.append(f'  "{src.node}" -> "out:{name}" [label="{src.port}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def cmd_draw(args: argparse.Namespace) -> int:
    dot = to_dot(_plan(args))
    if not args.output or args.output.lower().endswith(".dot"):
        if args.output:
            Path(args.output).write_text(dot)
        else:
            sys.stdout.write(dot)
        return 0
    exe = shutil.which("dot")
    if exe is None:
        raise MoraError("drawing an image needs graphviz's `dot` on PATH; write .dot instead (-o graph.dot)")
    fmt = Path(args.output).suffix.lstrip(".").lower()
    done = subprocess.run([exe, f"-T{fmt}", "-o", args.output], input=dot.encode(), capture_output=True, check=False)
    if done.returncode:
        raise MoraError(f"graphviz could not write {args.output}: {done.stderr.decode(errors='replace').strip()}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from mora.engine.graph.schema import graph_schema

    print(json.dumps(graph_schema(), indent=2))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """The cache commands, on a directory that already holds a cache; an I/O error is reported, not raised."""
    import sqlite3

    from mora.engine.cache.index import index_error
    from mora.engine.cache.store import Store, default_cache_dir
    from mora.engine.errors import CacheError

    for flag, value, action in (("--max-size", args.max_size, "gc"), ("--max-age", args.max_age, "gc"),
                                ("--grace", args.grace, "gc"), ("--no-repair", args.no_repair or None, "verify")):
        if value is not None and action != args.action:  # argparse takes every option for every action
            raise MoraError(f"{flag} applies only to `cache {action}`, not `cache {args.action}`")
    store = Store(Path(args.dir) if args.dir is not None else default_cache_dir(), create=False)
    try:
        return _cache_action(args, store)
    except (OSError, sqlite3.DatabaseError) as e:
        raise CacheError(f"cache {args.action} in {store.root} failed: {index_error(e, store.root)}") from None
    finally:
        store.close()


def _cache_action(args: argparse.Namespace, store: Store) -> int:
    from mora.engine.cache import maintenance

    if args.action == "stats":
        print(json.dumps(maintenance.stats(store), indent=2))
    elif args.action == "list":
        for key, entry in maintenance.entries(store):
            print(f"{key[:16]}  {maintenance.describe(store, entry)}")
    elif args.action == "verify":
        report = maintenance.verify(store, repair=not args.no_repair, ports_of=_output_ports)
        for bad in report.bad_entries:
            print(f"bad entry: {bad}" + ("" if args.no_repair else " (removed; it will be recomputed)"))
        stale = f", {report.stale} entries of an older cache version skipped (gc removes them)" if report.stale else ""
        print(f"verified {report.entries} entries, {report.artifacts} artifacts: {len(report.bad_entries)} bad, "
              f"{len(report.orphans)} unreferenced objects, {len(report.removed_tmp)} stale temporary files removed"
              f"{stale}")
        return 0 if report.ok else 1
    elif args.action == "gc":
        result = maintenance.gc(store, args.max_size, args.max_age,
                                maintenance.GRACE if args.grace is None else args.grace)
        print(json.dumps(result))
        if args.max_size is not None and result["kept_bytes"] > args.max_size:
            print(f"note: {store.root / 'objects'} still holds {result['kept_bytes']} bytes, over --max-size "
                  f"{args.max_size}: {result['kept_leased']} objects are leased by live runs, {result['kept_young']} "
                  "are younger than --grace", file=sys.stderr)
    return 0


def _output_ports(agent_type: str) -> dict[str, PortType] | None:
    """An agent's output ports by name, for `cache verify` (None: no such agent here, its entries are not checked)."""
    from mora.engine.graph.registry import default_registry

    agent = default_registry().get(agent_type)
    return None if agent is None else {p.name: p.type for p in agent.outputs}


def human(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `mora OVERRIDES` would compose (Hydra's compose API)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from mora.engine.frontends.config import register, register_launcher

    register()
    register_launcher()  # the config names hydra/sweeper=mora: its plugin must be known to compose it
    try:
        with initialize_config_module(config_module="mora.conf", version_base="1.3"):
            return compose("config", overrides=overrides)
    except HydraException as e:
        raise MoraError(f"bad override(s) {' '.join(overrides)}: {e}") from None


def preset_config(overrides: list[str]) -> tuple[dict[str, object], Path]:
    """The model preset and models folder that `mora OVERRIDES` would use (Hydra's compose API), once the config
    passes the checks a run makes first."""
    from omegaconf import OmegaConf

    from mora.engine.cache.store import default_cache_dir
    from mora.engine.execution.settings import default_models_dir
    from mora.engine.frontends.config import validate

    cfg = compose_config(overrides)
    validate(cfg)
    preset = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(preset, dict)
    cache = expand_user(cfg.cache.dir, "cache.dir") if cfg.cache.dir else default_cache_dir()
    return preset, default_models_dir(cache.resolve())  # as a run finds them


def model_state(ref: dict[str, object], models_dir: Path) -> models.Availability:
    """Where one model of a preset stands (hub: asks the hub unless offline; a folder, or one shipped in an installed
    package: there or not; built-in: built or not yet)."""
    name, source = str(ref["name"]), ref["source"]
    if source == "hub":
        return models.check_hub(ref)
    if source in ("path", "package"):
        try:
            path, problem = models.package_folder(name) if source == "package" else (expand_user(name, "model path"),
                                                                                   None)
        except InputError as e:
            path, problem = None, str(e)
        if path is None or not path.is_dir():
            return models.Availability(name, None, "missing", reason=problem or f"no folder {path}")
        size = sum(p.stat().st_size for p in models.model_files(path))
        return models.Availability(name, None, "present", size=size)
    where = model_loader().built_folder(str(source), name, models_dir)
    if (where / ".complete").exists():
        size = sum(p.stat().st_size for p in models.model_files(where))
        return models.Availability(name, None, "present", size=size)
    return models.Availability(name, None, "downloadable", reason="not built yet: built in code on first use, "
                                                                 "or now with --download")


class DownloadFailed(ModelNotFoundError):
    """`mora-admin models --download` left a model short of present: the machine's failing (the network, the disk, the
    hub), not the preset's."""

    exit_status = 1


def cmd_models(args: argparse.Namespace) -> int:
    """List (and with --download fetch) a preset's models. A role that a run would refuse is listed with the run's
    message: missing when its folder is not there, else invalid (status 2). With --download, a missing model is status 2
    and a download that left a model short of present (or failed) status 1, naming the roles."""
    preset, models_dir = preset_config(args.overrides)
    roles = preset.get("roles") or {}
    assert isinstance(roles, dict)
    print(f"model preset '{preset.get('name')}' (hub cache: {models.hub_cache_dir()}, built models: {models_dir})")
    missing, invalid, failed = [], [], []
    for role, spec in roles.items():
        if not spec:
            continue
        problem = models.reference(role, {}, preset)[1]  # as a run's planning resolves the role (config validated)
        if problem is not None:
            ref = {"revision": None, "variant": None, **spec}
            gone = _folder_absent(ref, models_dir)
            print(f"  {role:<22} {_label(ref):<60} {human(None):>9}  {'missing' if gone else 'invalid'}: {problem}")
            (missing if gone else invalid).append(role)
            continue
        for name, model in [(role, spec)] + ([(f"{role}.refiner", spec["refiner"])] if spec.get("refiner") else []):
            state = _show_model(name, {"revision": None, "variant": None, **model}, models_dir, args.download)
            {"missing": missing, "failed": failed}.get(state, []).append(name)
    if invalid:
        raise MoraError(f"invalid model role(s) {', '.join(invalid)}: see above (a run refuses them too)")
    if missing and args.download:
        raise ModelNotFoundError(f"could not fetch the models of role(s) {', '.join(missing)}: see above")
    if failed:
        raise DownloadFailed(f"the download left the models of role(s) {', '.join(failed)} short of present: see "
                             "above")
    return 0


def _folder_absent(ref: dict[str, object], models_dir: Path) -> bool:
    """Whether a role's reference is well formed but names a local folder (or a package's) that is not there: missing,
    not invalid. A name that is no text, empty, or no `MODULE:FOLDER` is the reference's own fault."""
    name, source = ref.get("name"), ref.get("source")
    if source not in ("path", "package") or not isinstance(name, str) or not name.strip():
        return False
    if source == "package" and not all(name.partition(":")[::2]):
        return False
    return model_state(ref, models_dir).state == "missing"


def _show_model(role: str, ref: dict[str, object], models_dir: Path, download: bool) -> str:
    """Print where one model stands, fetching or building it first with `download`: 'missing' (it cannot be had),
    'failed' (fetched or built, and still not present) or 'ok'."""
    state = model_state(ref, models_dir)
    label = _label(ref)
    fetched = download and state.state == "downloadable"
    if fetched:
        if ref["source"] == "hub":
            print(f"{role}: downloading {label} ({human(state.to_fetch)})", file=sys.stderr)
            try:
                models.download(ref, state)
            except Exception as e:  # noqa: BLE001 (huggingface_hub's transport and disk errors differ by version)
                print(f"{role}: the download of {label} failed: {_one_line(e)}", file=sys.stderr)
        else:
            model_loader().build(str(ref["source"]), str(ref["name"]), models_dir)
        state = model_state(ref, models_dir)
    if state.state == "present":
        note = "present"
    elif state.state == "downloadable" and ref["source"] == "hub":
        note = (f"not complete after the download: {human(state.to_fetch)} still to fetch" if download else
                f"downloadable, {human(state.to_fetch)} to fetch")
    else:
        note = f"missing: {state.reason}" if state.state == "missing" else state.reason
    print(f"  {role:<22} {label:<60} {human(state.size):>9}  {note}")
    if fetched and state.state != "present":
        return "failed"
    return "missing" if state.state == "missing" else "ok"


def _one_line(error: BaseException) -> str:
    """`Type: first line of the message`: a library's error without its pages of advice."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _label(ref: dict[str, object]) -> str:
    """`source:name[@revision][ (variant)]` of a preset's model reference, however incomplete."""
    return f"{ref.get('source')}:{ref.get('name')}" + (f"@{ref['revision']}" if ref.get("revision") else "") + \
        (f" ({ref['variant']})" if ref.get("variant") else "")


def cmd_report(args: argparse.Namespace) -> int:
    from mora.engine.frontends.report import rebuild

    for path in rebuild(Path(args.dir)):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mora-admin", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a graph file without running it")
    v.add_argument("file")
    v.add_argument("-i", "--input", action="append", default=[], help="NAME=VALUE graph input")
    v.add_argument("-m", "--model", help="the model preset whose `inputs` apply, as `mora model=PRESET` (default: "
                   "the config's)")
    v.set_defaults(fn=cmd_validate)
    a = sub.add_parser("agents", help="list agents with their ports and parameters")
    a.add_argument("name", nargs="?")
    a.set_defaults(fn=cmd_agents)
    d = sub.add_parser("draw", help="draw the expanded graph (DOT, or an image with graphviz)")
    d.add_argument("file")
    d.add_argument("-o", "--output")
    d.add_argument("-i", "--input", action="append", default=[])
    d.add_argument("-m", "--model", help="the model preset whose `inputs` apply (default: the config's)")
    d.set_defaults(fn=cmd_draw)
    s = sub.add_parser("schema", help="print the JSON Schema of graph files")
    s.set_defaults(fn=cmd_schema)
    c = sub.add_parser("cache", help="cache statistics, listing, verification and garbage collection")
    c.add_argument("action", choices=["stats", "list", "verify", "gc"])
    c.add_argument("--dir", type=folder_arg, help="cache directory (default: $MORA_CACHE_DIR, else the checkout's cache/ or the "
                   "user cache dir)")
    c.add_argument("--max-size", type=parse_size, help="gc: keep at most this much, e.g. 50G")
    c.add_argument("--max-age", type=parse_age, help="gc: drop entries older than this, e.g. 30d")
    c.add_argument("--grace", type=parse_age,
                   help="gc: keep unreferenced objects younger than this (default 10m); live runs' leases are "
                        "always kept")
    c.add_argument("--no-repair", action="store_true", help="verify: report bad entries without removing them")
    c.set_defaults(fn=cmd_cache)
    m = sub.add_parser("models", help="a model preset's models, their sizes and whether each is present")
    m.add_argument("overrides", nargs="*", help="Hydra overrides as for `mora`, e.g. model=recipe")
    m.add_argument("--download", action="store_true", help="fetch what is missing (hub models), build built-in ones")
    m.set_defaults(fn=cmd_models)
    r = sub.add_parser("report", help="rebuild a run's report.html, or a sweep's job reports and index.html")
    r.add_argument("dir", help="a run directory (with manifest.json) or a sweep directory (numbered job folders)")
    r.set_defaults(fn=cmd_report)
    workers.add_parser(sub, folder_arg)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure is one line and a status (mora.engine.frontends.guard), never a traceback."""
    return guarded("mora-admin", lambda: _dispatch(argv))


def _dispatch(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    return args.fn(args)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
