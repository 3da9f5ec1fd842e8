"""Graph YAML loads the same through libyaml and through PyYAML's pure-Python parser: values, lines, every bound."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mora.engine.errors import GraphError
from mora.engine.graph import yamlfile

ROOT = Path(__file__).resolve().parent.parent
GRAPH_FILES = sorted([*ROOT.glob("graphs/*.yaml"), *ROOT.glob("bench/graphs/*.yaml"), *ROOT.glob("conf/**/*.yaml")])
needs_libyaml = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")

TEXTS = {
    "merge": "a: &b {x: 1, y: 2}\nc: {<<: *b, y: 3}\n",
    "merge-list": "a: &a {x: 1}\nb: &b {y: 2, x: 5}\nc:\n  <<: [*a, *b]\n  z: 3\n",
    "merge-nested": "base: &base {steps: 10, seed: 1}\nm: &m\n  <<: *base\n  steps: 20\nn:\n  <<: *m\n  seed: 2\n",
    "merge-by-its-parent": "base: &base {steps: 10}\nc: &c\n  <<: *base\n  steps: 20\n<<: *c\n",
    "merge-override-keeps-place": "a: {<<: {x: 1, y: 2, true: 3}, x: 4, 1: 5}\n",
    "merge-a-scalar": "a: {<<: 5}\n",
    "merge-a-set": "a: &s !!set {x, y}\nb: {<<: *s}\n",
    "merge-in-a-set": "b: &b {x: 1}\ns: !!set {<<: *b}\n",
    "merge-twice": "a: {<<: {x: 1},\n  <<: {y: 2}}\n",
    "duplicate-key": "nodes:\n  a: 1\n  b: 2\n  a: 3\n",
    "python-tag": "a: !!python/object/apply:os.system ['true']\n",
    "unknown-tag": "a: !foo 1\n",
    "undefined-alias": "a: *nope\n",
    "alias-in-itself": "a: &x [1, *x]\n",
    "list-as-key": "? [1, 2]\n: x\n",
    "two-documents": "a: 1\n---\nb: 2\n",
    "empty": "",
    "comments-only": "# only a comment\n",
    "scalars": "x: [1, -1.5, .inf, ~, null, true, yes, Off, 0x1F, 0o17, 1_000, 2001-12-14, '3', \"a\\tb\", a b]\n",
    "block-scalars": "a: |\n  one\n   two\n\nb: >-\n  folded\n  text\n\n  para\nc: x\n",
    "quoted-multiline": "a: \"one\n  two\"\nb: 'three\n\n  four'\nc: 1\n",
    "anchored-scalar-key": "k: &k name\n*k : 2\n",
    "unicode-and-bom": "\ufeffa: café\nb: \U0001f600\n",
    "crlf": "a: 1\r\nb:\r\n  c: 2\r\n",
    "nel-and-line-separators": "a: 1\x85b: 2\u2028c: 3\u2029d: 4\n",
    "flow-over-lines": "nodes: {a: {agent: x,\n  in: {t: 1}},\n b: [1,\n 2]}\n",
    "explicit-document": "%YAML 1.1\n---\na: 1\n...\n",
    "block-nesting": "".join("  " * i + f"k{i}:\n" for i in range(100)),
    "flow-nesting-one-line": "nodes: " + "[" * 5000 + "]" * 5000 + "\n",
    "flow-nesting-lines": "[\n" * 100,
    "sequence-nesting-one-line": "- " * 100 + "x\n",
    "mixed-nesting": "a:\n  " + "[" * 2000,
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(6)),
    "unclosed-flow": "nodes:\n  a: {agent: t_source\noutputs:\n  out: {from: a.value}\n",
    "unclosed-list": "nodes: [\n",
    "bad-indent": "a:\n  b: 1\n c: 2\n",
    "mapping-in-scalar": "a: b: c\n",
    "unconvertible-values": "a: 1\nb: [2001-02-30]\n",
    "long-number": "a: 1\nb: 0x" + "f" * 5000 + "\n",
}


def located(value: Any) -> Any:
    """`value` with the line of each mapping and each of its keys, so that two loads compare on both."""
    if isinstance(value, dict):
        return ("mapping", value.line, [(k, value.lines[k], located(v)) for k, v in value.items()])
    if isinstance(value, list):
        return [located(v) for v in value]
    return type(value).__name__, value


def outcome(monkeypatch: pytest.MonkeyPatch, loader: type, text: str) -> Any:
    """What `load_yaml` makes of `text` through `loader`: the located data, or each problem's line and message.

    A syntax error's wording is each parser's own, so only its kind and line are compared.
    """
    monkeypatch.setattr(yamlfile, "LOADER", loader)
    try:
        return located(yamlfile.load_yaml(text, "g.yaml"))
    except GraphError as e:
        return [(p.line, "YAML syntax error" if p.message.startswith("YAML syntax error") else p.message)
                for p in e.problems]


@needs_libyaml
@pytest.mark.parametrize("name", TEXTS)
def test_libyaml_and_pure_python_parsing_agree(monkeypatch, name):
    text = TEXTS[name]
    assert outcome(monkeypatch, yamlfile.LOADER, text) == outcome(monkeypatch, yamlfile._PyLoader, text)


DEEP_MERGE = "{<<: [" + ", ".join(f"&b{j} " + f"{{a{j}: " * 40 + (f"*b{j - 1}" if j > 1 else "0") + "}" * 40
                                  for j in range(1, 10)) + "], k: *b9}\n"
"""2 KB whose merged mappings, built from inside `k` as the merge was once built after the mapping's own keys, took
Python past its recursion limit; built where `<<` stands, each is built before an alias names it."""
REFUSED_MERGES = {"merge-a-scalar": (1, "a merge (<<) takes a mapping or a list of mappings, not a scalar"),
                  "merge-twice": (2, "duplicate key '<<' (first at line 1)"),
                  "merge-a-set": (2, "a merge (<<) takes a mapping or a list of mappings, not a set"),
                  "merge-in-a-set": (2, "a merge (<<) is allowed only in a plain mapping")}


MERGES = {**{name: text for name, text in TEXTS.items() if name.startswith("merge") and name not in REFUSED_MERGES},
          "merge-deep-chain": DEEP_MERGE}


@pytest.mark.parametrize("name", MERGES)
@pytest.mark.parametrize("loader", ["libyaml", "pure"])
def test_merge_keys_give_the_values_and_order_pyyaml_gives(monkeypatch, name, loader):
    """YAML's merge: a mapping's own keys win, then the first merged mapping that has the key, each merged mapping as
    built with its own merges and overrides (a nested merge once gave the overridden value), in PyYAML's key order.
    The nested cases use keys of several characters: PyYAML 6.0.4 itself keeps a nested merge's overridden value
    when the key is one character (it drops merged duplicates by the key object's identity)."""
    if loader == "pure":
        monkeypatch.setattr(yamlfile, "LOADER", yamlfile._PyLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    ours, theirs = yamlfile.load_yaml(MERGES[name], "g.yaml"), yaml.safe_load(MERGES[name])
    assert ours == theirs

    def keys(value: Any) -> Any:
        return [(repr(k), keys(v)) for k, v in value.items()] if isinstance(value, dict) else None
    assert keys(ours) == keys(theirs)


@pytest.mark.parametrize("name", REFUSED_MERGES)
def test_a_merge_of_no_mapping_a_second_merge_key_or_a_merge_in_a_set_is_refused_at_its_key(name):
    with pytest.raises(GraphError) as info:
        yamlfile.load_yaml(TEXTS[name], "g.yaml")
    [problem] = info.value.problems
    line, message = REFUSED_MERGES[name]
    assert (problem.line, problem.message) == (line, f"YAML syntax error: {message}")


@needs_libyaml
@pytest.mark.parametrize("path", GRAPH_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_yaml_file_loads_the_same_through_either_parser(monkeypatch, path):
    text = path.read_text(encoding="utf-8")
    assert outcome(monkeypatch, yamlfile.LOADER, text) == outcome(monkeypatch, yamlfile._PyLoader, text)


@needs_libyaml
def test_the_value_bound_trips_at_the_same_line_through_either_parser(monkeypatch):
    monkeypatch.setattr(yamlfile, "MAX_YAML_VALUES", 1000)
    text = "nodes:\n" + "".join(f"  k{i}: [{i}, {{a: {i}}}]\n" for i in range(2000))
    fast, pure = outcome(monkeypatch, yamlfile.LOADER, text), outcome(monkeypatch, yamlfile._PyLoader, text)
    assert fast == pure and "more than 1000 values" in fast[0][1] and 150 < fast[0][0] < 250


@needs_libyaml
def test_graph_yaml_is_parsed_by_libyaml_not_by_the_pure_python_scanner(monkeypatch):
    def refuse(*args: Any) -> None:
        raise AssertionError("PyYAML's pure-Python scanner ran")

    monkeypatch.setattr(yaml.scanner.Scanner, "check_token", refuse)
    assert "nodes" in yamlfile.load_yaml((ROOT / "graphs" / "text_to_video.yaml").read_text(), "g.yaml")
