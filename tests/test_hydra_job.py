"""A sweep job's `.hydra` files written from texts shared by a template (mora.engine.frontends.hydra_job)."""
from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mora.engine.frontends.hydra_job import yaml_list

LINES = st.lists(st.one_of(st.sampled_from(["prompt=fox", "++inputs.n=3", "graph_file=/a b/c.yaml", "x: y", "- z", "",
                                            "'quoted'", "a" * 120 + " " + "b" * 40, "é=ü", "k=v #c", "true"]),
                           st.text(max_size=60), st.from_regex(r"\A\+{0,2}[A-Za-z_][A-Za-z0-9_.]*=[A-Za-z0-9_.+-]*\Z"),
                           st.from_regex(r"\A\+{0,2}inputs\.[a-z]+=-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?\Z")), max_size=6)


@settings(max_examples=400, deadline=None)
@given(st.lists(LINES, min_size=1, max_size=4))
def test_overrides_yaml_is_what_yaml_dump_writes(calls):
    """Item by item, with items kept between calls (as between a sweep's jobs), the text equals the whole list's dump."""
    kept: dict[str, str] = {}
    for lines in calls:
        got = yaml_list(lines, kept)
        assert got == yaml.dump(lines, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True,
                                default_flow_style=False)
        assert yaml.safe_load(got) == (lines or [])
