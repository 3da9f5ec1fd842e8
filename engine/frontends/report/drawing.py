"""The two pictures of a run report, drawn as inline SVG: the graph, and the timeline of nodes per worker.

The graph is laid out in layers, left to right: a node's layer is the length of the longest path
reaching it (in graphlib's topological order), and within a layer nodes sit near the average height
of their parents, which keeps most edges short and uncrossed. Nodes are coloured by status. The
layout is made once per graph shape (the jobs of a sweep share one), the boxes per run.
The timeline puts each computed node on the lane of the device and worker that ran it, as a
bar from its start to its end relative to the earliest start; bars that overlap in time within
a lane (a batch) stack in sub-rows. Cache hits have no time of their own: they sit as marks in
a lane of their own, so the parallelism and the hits show at a glance.
"""
from __future__ import annotations

import graphlib
from functools import lru_cache
from html import escape

from mora.engine.frontends.report.views import NodeView

COLOURS = {"computed": "#2e7d32", "cached": "#1565c0", "shared": "#7b1fa2", "failed": "#c62828",
           "skipped": "#9e9e9e"}
OTHER = "#f9a825"
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 176, 46, 36, 18, 12


def colour(status: str) -> str:
    return COLOURS.get(status, OTHER)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


@lru_cache(maxsize=64)
def _layout(ids: tuple[str, ...], edges: tuple[tuple[str, str], ...]) -> tuple[list[tuple[str, str]],
                                                                             dict[str, tuple[float, float]], int, int]:
    """The graph's edges to draw and drawing positions: the same for every job of a sweep (one graph's shape), so laid
    out once. A graph with a cycle (a damaged manifest) is drawn without its edges."""
    parents: dict[str, dict[str, None]] = {n: {} for n in ids}
    children: dict[str, dict[str, None]] = {n: {} for n in ids}
    for u, v in edges:
        if u in parents and v in parents:
            parents[v][u] = children[u][v] = None
    try:
        order = list(graphlib.TopologicalSorter(parents).static_order())
    except graphlib.CycleError:
        parents = children = {n: {} for n in ids}
        order = list(ids)
    layer: dict[str, int] = {}
    for n in order:
        layer[n] = max((layer[p] + 1 for p in parents[n]), default=0)
    columns: dict[int, list[str]] = {}
    for n in order:
        columns.setdefault(layer[n], []).append(n)
    row: dict[str, float] = {}
    for col in sorted(columns):
        members = columns[col]
        members.sort(key=lambda n: (sum(row[p] for p in parents[n]) / len(parents[n]) if parents[n] else 0.0, n))
        for i, n in enumerate(members):
            row[n] = float(i)
    pos = {n: (MARGIN + layer[n] * (BOX_W + GAP_X), MARGIN + row[n] * (BOX_H + GAP_Y)) for n in ids}
    width = MARGIN * 2 + (max(layer.values(), default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + max((len(c) for c in columns.values()), default=1) * (BOX_H + GAP_Y) - GAP_Y
    return [(u, v) for u in children for v in children[u]], pos, width, height


def graph_svg(nodes: tuple[NodeView, ...], edges: tuple[tuple[str, str], ...]) -> str:
    drawn, pos, width, height = _layout(tuple(dict.fromkeys(n.id for n in nodes)), tuple(map(tuple, edges)))
    by_id = {n.id: n for n in nodes}
    parts = [(f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="the graph, nodes coloured by status">'),
             ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#777"/></marker></defs>')]
    for u, v in drawn:
        x1, y1 = pos[u][0] + BOX_W, pos[u][1] + BOX_H / 2
        x2, y2 = pos[v][0], pos[v][1] + BOX_H / 2
        mid = (x1 + x2) / 2
        parts.append(f'<path class="edge" d="M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}" fill="none" '
                     'stroke="#999" stroke-width="1.4" marker-end="url(#arrow)"/>')
    for n in pos:
        node, (x, y) = by_id[n], pos[n]
        tip = f"{node.id}\n{node.agent} · {node.status}" + (f" · {node.seconds:.2f} s" if node.seconds else "")
        if node.error:
            tip += f"\n{node.error}"
        parts.append(
            f'<g class="node status-{escape(node.status)}" data-node="{escape(node.id)}" '
            f'data-status="{escape(node.status)}">'
            f'<title>{escape(tip)}</title>'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="7" fill="{colour(node.status)}"/>'
            f'<text x="{x + 8}" y="{y + 19}" class="id">{escape(_clip(node.id, 23))}</text>'
            f'<text x="{x + 8}" y="{y + 36}" class="sub">{escape(_clip(node.agent, 16))} · '
            f'{escape(node.status)}</text>'
            "</g>")
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(nodes: tuple[NodeView, ...], width: int = 960) -> str:
    timed = [n for n in nodes
             if n.started is not None and n.seconds is not None and n.status not in ("cached", "shared")]
    hits = [n for n in nodes if n.status in ("cached", "shared")]
    label_w, lane_h, bar_h, axis_h = 170, 26, 20, 24
    lanes: dict[str, list[list[NodeView]]] = {}
    if timed:
        t0 = min(n.started for n in timed)  # type: ignore[type-var]
        span = max(max(n.started + n.seconds for n in timed) - t0, 1e-6)  # type: ignore[operator]
    else:
        t0, span = 0.0, 1.0
    for n in sorted(timed, key=lambda n: (n.started, n.id)):
        rows = lanes.setdefault(_lane(n), [])
        for r in rows:  # the first sub-row whose last bar ended before this one starts
            last = r[-1]
            if last.started + last.seconds <= n.started + 1e-9:  # type: ignore[operator]
                r.append(n)
                break
        else:
            rows.append([n])
    plot_w = width - label_w - 10
    scale = plot_w / span
    y = axis_h
    parts: list[str] = []
    for name in sorted(lanes):
        rows = lanes[name]
        h = len(rows) * lane_h
        parts.append(f'<g class="lane" data-lane="{escape(name)}"><rect x="0" y="{y}" width="{width}" height="{h}" '
                     f'fill="{"#f4f4f4" if len(parts) % 2 else "#fff"}"/>'
                     f'<text x="6" y="{y + lane_h / 2 + 4}" class="lane-label">{escape(_clip(name, 24))}</text>')
        for i, r in enumerate(rows):
            for n in r:
                x = label_w + (n.started - t0) * scale  # type: ignore[operator]
                w = max(2.0, n.seconds * scale)  # type: ignore[operator]
                by = y + i * lane_h + (lane_h - bar_h) / 2
                text = f'<text x="{x + 4}" y="{by + 14}" class="bar-label">{escape(_clip(n.id, int(w // 7)))}</text>' \
                    if w > 40 else ""
                parts.append(f'<g class="bar" data-node="{escape(n.id)}"><title>{escape(n.id)} ({escape(n.agent)}): '
                             f'{n.seconds:.3f} s from +{n.started - t0:.3f} s</title>'  # type: ignore[operator]
                             f'<rect x="{x:.1f}" y="{by:.1f}" width="{w:.1f}" height="{bar_h}" rx="3" '
                             f'fill="{colour(n.status)}"/>{text}</g>')
        parts.append("</g>")
        y += h
    if hits:
        parts.append(f'<g class="lane" data-lane="cache"><text x="6" y="{y + lane_h / 2 + 4}" class="lane-label">'
                     f'cache hits ({len(hits)})</text>')
        step = min(16.0, plot_w / len(hits))
        for i, n in enumerate(hits):
            x = label_w + i * step
            parts.append(f'<g class="hit" data-node="{escape(n.id)}"><title>{escape(n.id)} ({escape(n.agent)}): '
                         f'{escape(n.status)}{" from " + escape(n.shared_from) if n.shared_from else ""}</title>'
                         f'<rect x="{x:.1f}" y="{y + 5}" width="{max(2.0, step - 3):.1f}" height="{lane_h - 10}" '
                         f'rx="2" fill="{colour(n.status)}"/></g>')
        parts.append("</g>")
        y += lane_h
    ticks = []
    for i in range(6):
        t = span * i / 5
        x = label_w + t * scale
        anchor = "end" if i == 5 else "middle"
        ticks.append(f'<line x1="{x:.1f}" y1="{axis_h - 4}" x2="{x:.1f}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{axis_h - 8}" class="tick" text-anchor="{anchor}">{t:.2f} s</text>')
    height = y + 4
    return (f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of nodes per device and worker">'
            + "".join(ticks) + "".join(parts) + "</svg>")


def _lane(n: NodeView) -> str:
    if n.device and n.worker and n.worker != n.device:
        return f"{n.device} / {n.worker}"
    return n.device or n.worker or "?"
