"""`mora --help`: Mora's own help, written through Hydra's app-help template (conf/config.yaml, hydra.help).

The template stays Hydra's: its `$APP_CONFIG_GROUPS` and `$FLAGS_HELP` are filled by Hydra, and
the parts only Mora knows come from OmegaConf resolvers registered here: the selected graph
(`graph=NAME` or `graph_file=PATH`, as the command line composes it) and its inputs with their
types, defaults (the model preset's where it sets one) and descriptions. Help is asked about the
graph and the values on its command line, so it fails as a run would, with one line and status 2,
when the graph cannot be read or used, or a value given with it (`inputs.NAME=`, `outputs=`) is
refused, an input file included: help that lists a graph is a promise that the same command
line without `--help` can start. Internal `*_schema` configs are not config
group options (engine.config stores them outside the groups), so Hydra's group list shows none.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mora.engine.errors import MoraError


def _graph_file(name: str | None, file: str | None) -> Path:
    from mora.engine.frontends.api import graph_path

    return graph_path(name, file)


def graph_section(name: str | None, file: str | None, _root_: DictConfig) -> str:
    """The selected graph's heading: its name, description and file (raises MoraError as a run would).

    The graph is planned with the command line's values, without its required inputs, and the input
    files it names are read, as `mora-admin validate` does.
    """
    from mora.engine.frontends import api
    from mora.engine.frontends.job import graph_inputs
    from mora.engine.graph.spec import read_graph_file

    path = _graph_file(name, file)
    spec = read_graph_file(path)
    defaults = OmegaConf.to_container(_root_.model.inputs, resolve=True)
    assert isinstance(defaults, dict)
    outputs = list(_root_.outputs) if _root_.outputs is not None else None
    api.check_input_files(api.plan_graph(spec, graph_inputs(_root_), outputs, standalone=True, defaults=defaults))
    label = Path(file).name if file else name
    return _escape(f"== Graph: {label} ==\n" + (f"{spec.description}\n" if spec.description else "") + f"File: {path}")


def inputs_table(name: str | None, file: str | None, preset_inputs: DictConfig | dict[str, Any] | None) -> str:
    """One line per graph input: name, type, default (or `required`) and description (raises MoraError)."""
    from mora.engine.graph.spec import MISSING, read_graph_file
    from mora.engine.graph.validate import beside
    from mora.engine.ports import FILE_KINDS

    spec = read_graph_file(_graph_file(name, file))
    preset = OmegaConf.to_container(preset_inputs) if isinstance(preset_inputs, DictConfig) else preset_inputs or {}
    assert isinstance(preset, dict)
    if not spec.inputs:
        return "(this graph has no inputs)"
    width = max(len(n) for n in spec.inputs)
    lines = []
    for inp in spec.inputs.values():
        default = preset.get(inp.name, inp.default)
        if default is inp.default and inp.type in FILE_KINDS and isinstance(default, str):
            default = beside(default, spec.file)  # the file a run reads: a relative default is beside the graph
        shown = "required" if default is MISSING else "default: the agent's" if default is None else \
            f"default {default!r}"
        if inp.name in preset and inp.default is not MISSING and preset[inp.name] != inp.default:
            shown += " (from the model preset)"
        text = f"  {inp.name:<{width}}  {inp.type.value:<6}  {shown}"
        lines.append(text + (f"  {inp.description}" if inp.description else ""))
    return _escape("\n".join(lines))


def complete_inputs(argv: list[str], comp_line: str | None) -> str | None:
    """Shell completion of `inputs.`: the selected graph's `inputs.NAME=` keys, or None to leave the query to Hydra.

    Graph inputs are not config keys until set (they live in the graph file), so Hydra's own
    completion cannot offer them; Mora answers a completion query (`-sc query=SHELL`) whose
    current word starts with `inputs.`, in Hydra's output format for that shell. A query comes
    from the shell's completion function, which sets COMP_LINE (`comp_line`); typed by hand
    without it, it is a usage error (MoraError), not a KeyError inside Hydra.
    """
    shell = next((a.removeprefix("query=") for a in argv if a.startswith("query=")), None)
    if shell is None or not {"-sc", "--shell-completion"} & set(argv):
        return None
    if comp_line is None:
        raise MoraError(f"-sc query={shell} answers the shell's completion function, which sets COMP_LINE; to turn "
                        f"completion on, run: eval \"$(mora -sc install={shell})\"")
    if comp_line.endswith(" "):
        return None
    words = comp_line.split()
    word = words[-1] if words else ""
    if not word.startswith("inputs.") or "=" in word:
        return None
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mora.engine.graph.spec import read_graph_file

    chosen = [w for w in words[1:-1] if w.split("=", 1)[0] in ("graph", "graph_file")]
    try:  # a bad graph is no completion, never an error printed into the user's command line
        with initialize_config_module("mora.conf", version_base="1.3"):
            cfg = compose("config", overrides=chosen)
        spec = read_graph_file(_graph_file(cfg.graph.name, cfg.graph_file))
    except (HydraException, OmegaConfBaseException, MoraError, OSError, ValueError):
        return ""
    matches = [f"inputs.{name}=" for name in spec.inputs if f"inputs.{name}".startswith(word)]
    return ("\n" if shell == "fish" else " ").join(matches)


def _escape(text: str) -> str:
    """Hydra fills the template with string.Template after OmegaConf resolves it: a literal `$` must be `$$`."""
    return text.replace("$", "$$")


def register() -> None:
    OmegaConf.register_new_resolver("mora_help_graph", graph_section, replace=True)
    OmegaConf.register_new_resolver("mora_help_inputs", inputs_table, replace=True)
