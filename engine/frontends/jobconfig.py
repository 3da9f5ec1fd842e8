"""A sweep's job configs, composed once: graph-input overrides are applied as data, not by composing again.

Hydra composes every job of a sweep from scratch (defaults list, config files, schema merge:
0.2-0.8 s each on this config tree), twice with the basic sweeper (its batch validation and the
launcher). Policy here: a job's overrides are split into input overrides (keys `inputs`,
`inputs.NAME`, `prompt`, `seed`: no config group, no package) and the rest. Hydra composes the
config of each distinct rest once (normally once per sweep: the template); a job's input
overrides are then applied, in order, to a copy of the template's three input keys with Hydra's
own `_apply_overrides_to_config`, the step that applies them in a full composition. Input keys
select no group and no other key reads them, so the result is the job's config as Hydra would
compose it, type checks and errors included. A template whose other values interpolate an input
key or a job's Hydra values (`${inputs.NAME}`, `${hydra:job.num}`) would differ from job to job,
so such a sweep composes every job in full, as Hydra does.

A job's input overrides of the plainest form (`inputs.n=3`, `++inputs.x=0.25`, `prompt=fox`: a
decimal number or a bare word) are read by a regular expression into the `Override` Hydra's
grammar gives them (tests compare the two on generated lines); anything else goes through Hydra's
parser. The cache of templates and of the jobs the sweeper has checked belongs to the config loader
(one per Hydra run), so the Mora sweeper's validation and the Mora launcher share it: a job is
composed once per sweep. `bind` writes one job's values (inputs, job number
and id, task overrides, override_dirname) into the shared template in place, which is how a
job's config is read without a per-job copy of the whole tree.
"""
from __future__ import annotations

import copy
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from mora.engine.frontends.job import INPUT_KEYS

PER_JOB = re.compile(r"\$\{[^}]*\b(?:inputs|prompt|seed|hydra)\b")
"""An interpolation that may read a graph input or the job's own Hydra values (job.num, output_dir...)."""


PLAIN_INPUT = re.compile(r"(?P<prefix>\+{0,2})(?P<key>inputs(?:\.[A-Za-z_][A-Za-z0-9_]*)?|prompt|seed)"
                         r"=(?:(?P<int>-?(?:0|[1-9][0-9]*))|(?P<float>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
                         r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")
"""An input override whose value is a decimal integer, a decimal float (as Python writes one: an Optuna trial's
value) or a bare word: Hydra's INT, FLOAT or ID, read here without ANTLR."""
KEYWORDS = frozenset({"true", "false", "null", "inf", "nan"})
"""Bare words Hydra's grammar reads as a bool, None or a float (case-insensitively), left to its parser."""
ADDING = {"": OverrideType.CHANGE, "+": OverrideType.ADD, "++": OverrideType.FORCE_ADD}


def parse_plain_input(line: str) -> Override | None:
    """The Override Hydra's parser makes of a plain input override, or None where the line is not one."""
    m = PLAIN_INPUT.fullmatch(line)
    if m is None or (m["word"] or "").lower() in KEYWORDS:
        return None
    value: int | float | str = int(m["int"]) if m["int"] else float(m["float"]) if m["float"] else m["word"]
    return Override(type=ADDING[m["prefix"]], key_or_group=m["key"], value_type=ValueType.ELEMENT, _value=value,
                    input_line=line)


def is_input(override: Override) -> bool:
    """An override of a graph input: `inputs[.NAME]`, `prompt` or `seed`, with no package and not Hydra's."""
    key = override.key_or_group
    return (override.package is None and not override.is_hydra_override()
            and (key in INPUT_KEYS or key.startswith("inputs.")))


@dataclass(frozen=True)
class Template:
    """A config composed without any input override, and each of its three input keys as composed."""

    config: DictConfig
    parts: dict[str, DictConfig]
    """Per input key, a one-key struct config holding its value as composed (typed nodes: seed stays an int)."""
    shared: bool
    """False when another value interpolates an input: every job is then composed in full."""
    naming: tuple[list[str], str, str]
    """`hydra.job.config.override_dirname`'s exclude_keys, item_sep and kv_sep, read once."""
    applied: dict[tuple[str, tuple[str, ...]], DictConfig | None] = field(default_factory=dict, compare=False)
    """An input key's part after a list of its overrides (`prompt=fox` in every job is applied once), or None
    where they delete it; bounded by APPLIED_KEPT."""
    bound: dict[str, DictConfig | None] = field(default_factory=dict, compare=False)
    """The part each input key of `config` holds now (bind assigns only what changes)."""
    task: list[str] = field(default_factory=list, compare=False)
    """The task override lines `config` holds now (`hydra.overrides.task`), as plain strings to compare with."""


@dataclass(frozen=True)
class JobConfig:
    """One job's config: its template (shared, or its own full composition) and its input keys."""

    overrides: tuple[str, ...]
    template: Template
    inputs: dict[str, DictConfig]
    """Per input key the job's config holds (a deleted one is absent), its one-key part (shared where alike)."""
    override_dirname: str

    @cached_property
    def input_keys(self) -> dict[str, Any]:
        """The input keys the job's config holds (`inputs`, `prompt`, `seed`: a deleted one is absent), unresolved.

        Read once (planning and the job's .hydra files both need them); treat as read-only.
        """
        data: dict[str, Any] = {}
        for part in self.inputs.values():
            data.update(OmegaConf.to_container(part, resolve=False))  # type: ignore[arg-type]
        return data

    def graph_inputs(self) -> dict[str, Any]:
        """`inputs.*` plus the `prompt`/`seed` aliases, unresolved (as mora.engine.frontends.job.graph_inputs reads them)."""
        data = self.input_keys
        values = data.get("inputs") or {}
        return {**values, **{k: data[k] for k in ("prompt", "seed") if data.get(k) is not None}}


class Composer:
    """Job configs for one Hydra run (its config loader and master config), templates cached by their overrides."""

    def __init__(self, loader: ConfigLoader, master: DictConfig):
        self.loader = loader
        self.master = master
        self.templates: dict[tuple[str, ...], Template] = {}
        self.parsed: dict[str, Override] = {}
        self.checked: dict[tuple[str, ...], JobConfig] = {}
        self.parser = OverridesParser.create()

    def _parse(self, line: str) -> Override:
        found = self.parsed.get(line)
        if found is None:
            found = parse_plain_input(line)
            if found is None:  # the template's own lines are few: kept, not parsed again for every job
                found = self.parsed[line] = self.parser.parse_overrides([line])[0]
        return found

    def _compose(self, overrides: list[str]) -> Template:
        config = self.loader.load_sweep_config(self.master, overrides)
        parts = {k: DictConfig({k: config._get_node(k)}) for k in INPUT_KEYS}  # typed nodes, copied: seed stays an int
        for part in parts.values():
            OmegaConf.set_struct(part, True)
        others = OmegaConf.to_container(OmegaConf.masked_copy(config, [k for k in config if k not in (*INPUT_KEYS, "hydra")]),
                                        resolve=False, enum_to_str=True)
        shared = not PER_JOB.search(repr(others))
        naming = config.hydra.job.config.override_dirname
        return Template(config, parts, shared, (list(naming.exclude_keys), naming.item_sep, naming.kv_sep),
                        bound=dict(parts),
                        task=OmegaConf.to_container(config.hydra.overrides.task, resolve=False))  # type: ignore[arg-type]

    def check(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose a batch's jobs (the sweeper's check: raises Hydra's errors), kept for the launcher's `job`."""
        self.checked = {tuple(overrides): self._job(overrides) for overrides in batch}

    def job(self, overrides: Sequence[str]) -> JobConfig:
        """The config of the job with these task overrides, composed by `check` or now (raises Hydra's errors)."""
        found = self.checked.pop(tuple(overrides), None)
        return found if found is not None else self._job(overrides)

    def _job(self, overrides: Sequence[str]) -> JobConfig:
        parsed = [self._parse(line) for line in overrides]
        rest = tuple(o.input_line for o in parsed if not is_input(o))
        template = self.templates.get(rest)
        if template is None:
            template = self.templates[rest] = self._compose(list(rest))
        if not template.shared:
            template = self._compose(list(overrides))
        inputs = _apply(template, [o for o in parsed if is_input(o)])
        exclude, item_sep, kv_sep = template.naming
        dirname = get_overrides_dirname(overrides=parsed, exclude_keys=exclude, item_sep=item_sep, kv_sep=kv_sep)
        return JobConfig(tuple(overrides), template, inputs, dirname)

    def bind(self, job: JobConfig, idx: int) -> DictConfig:
        """The job's template holding this job's values: its config, in place, until the next `bind`.

        Flags are opened only where a key is added or deleted: opening them on the root walks the whole tree. An
        input key's node is the part's own node, moved into the config (assigning it would deep-copy it, 1 ms a
        job): the part holds a value already validated against the key's type; Hydra's job values are set on
        their nodes (validated and converted as an assignment would).
        """
        template = job.template
        config = template.config
        content = config.__dict__["_content"]
        for key in INPUT_KEYS:  # a key the job deletes (`~seed`) is deleted here, and back for the next job
            part = job.inputs.get(key)
            if template.bound.get(key) is part:
                continue
            template.bound[key] = part
            if part is not None:
                node = part._get_node(key)
                if key in content:  # the part's node moves in, as validated when the part was made: no deep copy
                    node._set_parent(config)  # type: ignore[union-attr]
                    content[key] = node
                else:
                    with open_dict(config):
                        config[key] = part._get_node(key)
            elif key in config:
                with open_dict(config):
                    del config[key]
        hydra = config.hydra
        hydra_job = hydra.job
        for key, value in (("id", idx), ("num", idx), ("override_dirname", job.override_dirname)):
            hydra_job._get_node(key)._set_value(value)  # type: ignore[union-attr]  # validated as setattr would
        held = template.task
        if len(held) == len(job.overrides):  # jobs of a sweep differ in an override or two: only those are set
            task = hydra.overrides._get_node("task")
            assert isinstance(task, ListConfig)
            for i, line in enumerate(job.overrides):
                if held[i] != line:
                    task[i] = held[i] = line
        else:
            hydra.overrides.task = list(job.overrides)
            held[:] = job.overrides
        return config


APPLIED_KEPT = 256
"""Input overrides applied per template and kept for reuse: the ones every job shares come first."""


def _apply(template: Template, overrides: list[Override]) -> dict[str, DictConfig]:
    """Each input key's part after the job's overrides of it, in order (an input key's overrides touch no other key)."""
    mine: dict[str, list[Override]] = {}
    for o in overrides:
        mine.setdefault(o.key_or_group.split(".")[0], []).append(o)
    out: dict[str, DictConfig] = {}
    for key in INPUT_KEYS:
        if key not in mine:
            out[key] = template.parts[key]
            continue
        lines = (key, tuple(str(o.input_line) for o in mine[key]))
        if lines in template.applied:
            part = template.applied[lines]
        else:
            part = copy.deepcopy(template.parts[key])
            ConfigLoaderImpl._apply_overrides_to_config(mine[key], part)
            part = part if key in part else None
            if len(template.applied) < APPLIED_KEPT:
                template.applied[lines] = part
        if part is not None:
            out[key] = part
    return out


_COMPOSERS: weakref.WeakKeyDictionary[ConfigLoader, Composer] = weakref.WeakKeyDictionary()


def composer(loader: ConfigLoader, master: DictConfig) -> Composer:
    """The composer of this Hydra run (one per config loader, shared by its sweeper and launcher)."""
    found = _COMPOSERS.get(loader)
    if found is None or found.master is not master:
        found = _COMPOSERS[loader] = Composer(loader, master)
    return found


__all__ = ["Composer", "JobConfig", "Template", "composer", "is_input", "parse_plain_input"]
