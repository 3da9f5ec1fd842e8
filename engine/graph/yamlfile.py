"""Graph YAML: text in, plain data out, safely, within bounds, every mapping knowing its lines.

Policy: a graph file is untrusted text. It is loaded with PyYAML's safe constructors, so no tag
can create a Python object; a duplicate key is an error, never an overwrite; and each mapping
remembers the line of each key, for messages. Bounds, so that no file can hang Mora or exhaust its
memory: values may nest at most `MAX_YAML_DEPTH` levels and expand, counting every alias at its
full size, to at most `MAX_YAML_VALUES` values, so an alias bomb ("billion laughs") is refused
while it is being composed, before anything expands; at most `MAX_YAML_DIRECTIVES` directives (lines
that open with `%` outside a value), and a number may have at most `MAX_NUMBER_CHARS` characters. Every
refusal is a GraphError with the line, a value its type cannot hold (`2001-13-45`, `!!int abc`) included.

Speed: libyaml, in C, scans and parses wherever PyYAML was built with it (`yaml.__with_libyaml__`,
as in its wheels on PyPI); PyYAML's pure-Python scanner took seconds over a file of the 1 MiB size
limit. Composition and construction, where the bounds and checks live, are the same Python code
over either parser, so values, lines and every bound's message are the same. Where the two parsers
disagree on malformed YAML, libyaml's verdict stands: a syntax error's wording (and, now and then,
its line) is libyaml's, a tab between tokens is accepted as the YAML spec allows, `{key:}` is refused.
What remains is Python's work for each value composed and built, 5-10 us on a 2-core machine,
and `MAX_YAML_VALUES` is what bounds it: 20,000 values are refused in 0.1-0.2 s there
(bench/yaml_bounds.py), and hold 80 times the largest shipped graph (253 values) or a
thousand nodes written out one by one (14,007).
"""
from __future__ import annotations

import re
from collections.abc import Hashable
from itertools import islice
from typing import Any

import yaml

from mora.engine.errors import GraphError, Problem, shown

MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 20_000
MAX_YAML_DIRECTIVES = 64
MAX_NUMBER_CHARS = 4300
"""Python's own limit on an int's decimal digits, for every number: PyYAML converts a sexagesimal int (`1:59:59`)
by arithmetic that grows with the square of its length, a minute for 1 MiB."""
MAX_INT_BITS = 1024
"""An int must fit a float's range (what a graph's numbers are checked against): a larger one (a long hex literal
reaches 5,000 decimal digits in 4,300 characters) cannot even be printed in a message."""
_DIRECTIVE = re.compile(r"[\n\r\x85\u2028\u2029]%")
"""Where a directive may start: a `%` that opens a line (a graph file needs none, or a `%YAML` line)."""
MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_SCANNED_TOKENS = 10 * MAX_YAML_VALUES
"""How far the directive count scans: a document of more tokens holds more values than allowed (a value takes at most
a few tokens), so it is refused while composed, before the parser reaches a later document's directives."""


class _Mapping(dict):
    """A dict that remembers the line of each key (1-based)."""

    line: int | None = None
    lines: dict[Any, int]


class _TooLarge(yaml.composer.ComposerError):
    """The document exceeds a bound: reported as such, not as a syntax error."""


class _BadValue(yaml.constructor.ConstructorError):
    """A scalar its tag's constructor cannot convert (`2001-13-45`, `!!int abc`): located, not an internal error."""


class _Bounded(yaml.composer.Composer, yaml.constructor.SafeConstructor):
    """Composition and construction with the bounds, duplicate keys and lines, whichever parser hands it events."""

    def _start_bounds(self) -> None:
        self._depth = 0
        self._values = 0  # values composed so far, each alias counted at the full size of what it names
        self._sizes: dict[int, int] = {}  # id(node) -> values it expands to, aliases included

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Count each value as it is composed, so a document over the bound is refused at the value that crosses it."""
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:  # the alias names a collection still being composed: it contains itself
                raise yaml.composer.ComposerError(None, None, "an alias may not refer to a value that contains it",
                                                  mark)
            self._count(self._sizes[id(node)], mark)
            return node
        start = self._values
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooLarge(None, None, f"values nest deeper than {MAX_YAML_DEPTH} levels", mark)
            self._count(1, mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._values - start
        return node

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > MAX_YAML_VALUES:
            raise _TooLarge(None, None, f"the document expands to more than {MAX_YAML_VALUES} values (each YAML "
                                        "alias counts at the full size of what it names)", mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's, with a scalar that its tag's constructor fails to convert refused at its line."""
        if not isinstance(node, yaml.ScalarNode):
            return super().construct_object(node, deep)
        try:
            return super().construct_object(node, deep)
        # what PyYAML's constructors let out: ValueError (int, float, timestamp: `2001-13-45`), OverflowError (a long
        # sexagesimal float), KeyError (`!!bool maybe`), AttributeError (`!!timestamp abc`)
        except (ValueError, OverflowError, KeyError, AttributeError):
            cut = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            raise _BadValue(None, None, f"{cut!r} is not a valid {node.tag.rsplit(':', 1)[-1]}",
                            node.start_mark) from None

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """PyYAML's, for the mapping-built types other than a plain mapping (`!!set`), with no merge: it would rewrite
        the merged nodes in place, which other mappings share."""
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                raise yaml.constructor.ConstructorError(None, None, "a merge (<<) is allowed only in a plain mapping",
                                                        key_node.start_mark)
        super().flatten_mapping(node)

    def construct_number(self, node: yaml.ScalarNode) -> int | float:
        """An int or float of at most `MAX_NUMBER_CHARS` characters."""
        if len(node.value) > MAX_NUMBER_CHARS:
            raise _TooLarge(None, None, f"a number of {len(node.value)} characters, more than the {MAX_NUMBER_CHARS} "
                                        "allowed", node.start_mark)
        if node.tag != "tag:yaml.org,2002:int":
            return super().construct_yaml_float(node)
        value = super().construct_yaml_int(node)
        if value.bit_length() > MAX_INT_BITS:
            raise _TooLarge(None, None, f"an int of {value.bit_length()} bits, more than a number may hold "
                                        f"({MAX_INT_BITS})", node.start_mark)
        return value


def _construct_mapping(loader: _Bounded, node: yaml.MappingNode, deep: bool = False) -> _Mapping:
    """A mapping with its lines: what its `<<:` merge brings (the first merged mapping that has a key gives it), its
    own keys over those (a duplicate refused). Each merged mapping is taken as built, with its own merges and
    overrides: PyYAML's in-place flattening left a merged mapping's overridden keys beside its own, so a nested merge
    could pick the overridden value, and a mapping merged by its own parent read as a duplicate. Everything is built
    in document order (the merged mappings where `<<` stands), so building never recurses deeper than the nesting."""
    own = _Mapping()
    own.line = node.start_mark.line + 1
    own.lines = {}
    merge_line: int | None = None
    sources: list[_Mapping] = []
    for key_node, value_node in node.value:
        if key_node.tag == MERGE_TAG:
            if merge_line is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '<<' (first at line {merge_line})", key_node.start_mark)
            merge_line = key_node.start_mark.line + 1
            sources = _merged_mappings(loader, key_node, value_node)
            continue
        if key_node.tag == "tag:yaml.org,2002:value":  # a `=` key: a plain string, as PyYAML's flattening makes it
            key_node.tag = "tag:yaml.org,2002:str"
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a name or a number, not a list or mapping", key_node.start_mark)
        if key in own:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shown(key)} (first at line {own.lines[key]})", key_node.start_mark)
        own[key] = loader.construct_object(value_node, deep=True)
        own.lines[key] = key_node.start_mark.line + 1
    if merge_line is None:
        return own
    result = _Mapping()
    result.line, result.lines = own.line, {}
    for source in sources:
        for key, value in source.items():
            if key not in result:
                result[key] = value
                result.lines[key] = source.lines[key]
    result.update(own)  # a key merged and also given keeps the merged key's place, as PyYAML orders them
    result.lines.update(own.lines)
    return result


def _merged_mappings(loader: _Bounded, key_node: yaml.Node, value_node: yaml.Node) -> list[_Mapping]:
    """The mappings a `<<:` key names (one, or a list of them), built; anything else refused at the key."""
    nodes = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
    for source in nodes:
        if not isinstance(source, yaml.MappingNode) or source.tag != yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG:
            what = source.id if not isinstance(source, yaml.MappingNode) else source.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"a merge (<<) takes a mapping or a list of mappings, not a {what}", key_node.start_mark)
    return [loader.construct_object(source, deep=True) for source in nodes]


_Bounded.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Bounded.add_constructor("tag:yaml.org,2002:int", _Bounded.construct_number)
_Bounded.add_constructor("tag:yaml.org,2002:float", _Bounded.construct_number)


class _PyLoader(_Bounded, yaml.SafeLoader):
    """PyYAML's pure-Python scanner and parser: used only where PyYAML was built without libyaml."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._start_bounds()

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # the scanner looks ahead up to 1024 characters at a cost that grows with the flow level: stop it early
        if self.flow_level >= MAX_YAML_DEPTH:
            raise _TooLarge(None, None, f"values nest deeper than {MAX_YAML_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)


if yaml.__with_libyaml__:
    class _LibyamlLoader(_Bounded, yaml.resolver.Resolver, yaml.cyaml.CParser):
        """libyaml's scanner and parser, in C, under the same composition."""

        def __init__(self, stream: str):
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)
            self._start_bounds()

    LOADER: type[_Bounded] = _LibyamlLoader
else:
    LOADER = _PyLoader


def _check_directives(text: str) -> None:
    """Refuse the file at its directive past `MAX_YAML_DIRECTIVES`, before libyaml's parser compares each `%TAG` with
    every one before it (40,000 of them took 3 s). Counting the lines that open with `%` is enough for nearly every
    file; one with more (a quoted scalar's lines may open with `%` too) has its directives counted by the scanner,
    which reads them in linear time and knows a scalar's lines from a directive."""
    lines = "\n" + text.removeprefix("\ufeff")  # the first line follows a break too: one pattern, no slow alternation
    if next(islice(_DIRECTIVE.finditer(lines), MAX_YAML_DIRECTIVES, None), None) is None:
        return
    scanner = LOADER(text)
    directives = 0
    for _ in range(MAX_SCANNED_TOKENS):
        if scanner.check_token(yaml.StreamEndToken):
            return
        token = scanner.get_token()
        if isinstance(token, yaml.DirectiveToken) and (directives := directives + 1) > MAX_YAML_DIRECTIVES:
            raise _TooLarge(None, None, f"more than {MAX_YAML_DIRECTIVES} YAML directives (lines that start with "
                                        "'%' outside a value)", token.start_mark)


def load_yaml(text: str, file: str) -> Any:
    """Parse YAML safely, within the bounds; any problem with it becomes a GraphError with its line."""
    try:
        _check_directives(text)
        return yaml.load(text, Loader=LOADER)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = str(e.problem or e)
        too_large = isinstance(e, _TooLarge)
        if problem == "exceeded maximum nesting depth":  # libyaml's own limit, 1000 levels, met in its look-ahead
            too_large, problem = True, f"values nest deeper than {MAX_YAML_DEPTH} levels"
        if too_large:
            raise GraphError([Problem(file, f"graph file too large to read: {problem}", line=line)]) from None
        if isinstance(e, _BadValue):
            raise GraphError([Problem(file, f"YAML value error: {problem}", line=line)]) from None
        if problem.startswith("could not determine a constructor for the tag"):
            tag = problem.rsplit(" ", 1)[-1]
            raise GraphError([Problem(file, f"YAML tag {tag} is not allowed: graph files are plain data and cannot "
                                            "create Python objects", line=line)]) from None
        raise GraphError([Problem(file, f"YAML syntax error: {problem}", line=line)]) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow: located by its offset (libyaml's in bytes)
        data = text if LOADER is _PyLoader else text.encode("utf-8", "surrogatepass")
        line = data[:e.position].count("\n" if isinstance(data, str) else b"\n") + 1
        raise GraphError([Problem(file, f"YAML error: {e.reason} ({_character(e.character)})", line=line)]) from None
    except yaml.YAMLError as e:
        raise GraphError([Problem(file, f"YAML error: {e}")]) from None


def _character(char: str | int) -> str:
    code = ord(char) if isinstance(char, str) else char
    return f"character U+{code:04X}"
