"""The projection plot's decoration, drawn over ``sss_core.figures.projection_figure``: dimming what a search did
not match (with an undimmed legend), axis ranges that fill the plot, and text labels placed where they overlap no
label and no point. Pure plotly and numpy; the Projection panel (``app.panels.projection``) calls ``decorate``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from sss_core import analysis

DIM = 0.15  # opacity of the sentences a search does not match
LABEL_CHARS = 28  # a text label shows this many characters of its sentence at most
PLOT_MARGIN_PX = 140  # figure height minus plot area height (legend below, margins), px
LABEL_FONT_PX = 10  # text labels' font size
LABEL_CHAR_PX = 6.0  # the width of one label character, px (plotly's default font at 10 px averages 5.5)
LABEL_GAP_PX = 7  # from a point's centre to its label's nearest edge, px
PAD = 0.06  # each axis range reaches this fraction of the points' span beyond them


def _dim(fig, proj, shown: list[int], keep: set[int] | None) -> None:
    """Make each point answer in run sentence indices (customdata), and dim the points and arrows of the sentences
    outside ``keep`` (local indices; None: dim nothing) to opacity ``DIM``."""
    for trace in fig.data:
        if trace.customdata is not None and trace.meta and "when" in trace.meta:
            idx = [int(j) for j in trace.customdata]
            trace.customdata = [shown[j] for j in idx]
            if keep is not None:
                trace.marker.opacity = [1.0 if j in keep else DIM for j in idx]
    if keep is not None:
        where = {(float(proj.after[j, 0]), float(proj.after[j, 1])): j for j in range(len(shown))}
        for ann in fig.layout.annotations:
            j = where.get((float(ann.x), float(ann.y)))
            if j is not None and j not in keep:
                ann.opacity = DIM


def _legend_at_full_opacity(fig) -> None:
    """A legend whose symbols are not dimmed with the points: each dimmed point trace leaves the legend to a
    pointless twin (x = y = [None]) with the same name, legend group and marker at opacity 1, so clicking the
    entry still hides the points; the twins keep the legend's order (legendrank 999, before the rings' 1000)."""
    twins = []
    for trace in fig.data:
        meta = trace.meta or {}
        if "when" in meta and trace.showlegend is not False and trace.marker.opacity is not None:
            trace.showlegend = False
            marker = trace.marker.to_plotly_json()
            marker.pop("opacity", None)
            twins.append(go.Scatter(x=[None], y=[None], mode="markers", name=trace.name, legendgroup=trace.legendgroup,
                                    marker=marker, hoverinfo="skip", legendrank=999,
                                    meta={"legend": meta.get("group", meta.get("colour"))}))
    fig.add_traces(twins)


def axis_ranges(proj, equal: bool, size: tuple[float, float]) -> tuple[list[float], list[float]]:
    """The x and y ranges of a projection's plot: the points' extent and ``PAD`` of it either side. ``equal`` (PCA:
    distances in the plane mean something): one scale on both axes, the shorter range widened about its centre to
    the plot area's ``size`` (width, height) px; else each axis fills the plot (UMAP
    and t-SNE: their axes have no units, and one scale squeezed them into a strip of a wide plot)."""
    xy = np.concatenate([proj.before, proj.after])
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - PAD * span, hi + PAD * span
    if equal:
        w, h = size
        scale = max((hi[0] - lo[0]) / w, (hi[1] - lo[1]) / h)  # data units per pixel
        mid = (lo + hi) / 2
        lo, hi = mid - scale * np.array([w, h]) / 2, mid + scale * np.array([w, h]) / 2
    return [float(lo[0]), float(hi[0])], [float(lo[1]), float(hi[1])]


LABEL_POSITIONS = {  # plotly textposition -> (x, y) of the label's box centre from the point, in box sizes and gaps
    "top center": (0, 1), "bottom center": (0, -1), "middle right": (1, 0), "middle left": (-1, 0),
    "top right": (1, 1), "top left": (-1, 1), "bottom right": (1, -1), "bottom left": (-1, -1)}


def place_labels(points_px: np.ndarray, labelled: list[int], texts: list[str], size: tuple[float, float],
                 marker_px: np.ndarray | float = 6.0) -> dict[int, tuple[str, tuple[float, float]]]:
    """Where each labelled point's text goes so that no two labels overlap, none covers a point and none leaves the
    plot: {point: (plotly textposition, (dx, dy) px from the point to the text's anchor)}; a point whose label fits
    nowhere is left out (its text is in the hover).

    points_px: (m, 2) every drawn point (markers, rings) in pixels from the plot's bottom-left corner; labelled: the
    rows to label, the most important first (each tries ``LABEL_POSITIONS`` in order and takes the first free place,
    ``LABEL_GAP_PX`` beyond its own marker); texts: their labels; size: the plot's (width, height) in px;
    marker_px: half of each point's size (m,) or of all, px. Label boxes are estimated (``LABEL_CHAR_PX`` per
    character, ``LABEL_FONT_PX`` + 3 high), so the test of the drawn plot is the browser's.
    """
    w, h = size
    r = np.broadcast_to(np.asarray(marker_px, dtype=float), (len(points_px),))
    points = [(x - q, y - q, x + q, y + q) for (x, y), q in zip(points_px, r)]
    placed: list[tuple[float, float, float, float]] = []
    out = {}

    def free(box, own):
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            return False
        hits = [b for j, b in enumerate(points) if not np.array_equal(points_px[j], own)] + placed
        return not any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in hits)

    for i, text in zip(labelled, texts):
        bw, bh = LABEL_CHAR_PX * len(text), LABEL_FONT_PX + 3
        x, y = points_px[i]
        gap = max(r[j] for j in range(len(points_px)) if np.array_equal(points_px[j], points_px[i])) + LABEL_GAP_PX
        for name, (dx, dy) in LABEL_POSITIONS.items():
            cx, cy = x + dx * (gap + bw / 2), y + dy * (gap + bh / 2)
            box = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
            if free(box, points_px[i]):
                placed.append(box)
                out[i] = (name, (dx * gap, dy * gap))
                break
    return out


def label_text(sentence: str) -> str:
    """A sentence as a text label: its first ``LABEL_CHARS`` characters (an ellipsis where cut)."""
    return sentence if len(sentence) <= LABEL_CHARS else sentence[:LABEL_CHARS - 1] + "…"


def _text_labels(fig, proj, emb: analysis.EmbeddingSet, shown: list[int], matches: set[int] | None, ranges,
                 size: tuple[float, float]) -> str:
    """Add text labels beside the after points: of the search's ``matches`` (local indices) when there is a search,
    else of the edit's own probes (every group but the background), the edit prompt first; each where it overlaps
    no other label and no point not dimmed (``place_labels``); the text trace's meta "sentences" lists their run indices
    (``shown``: the run index of each local one). Returns what was labelled, for a caption."""
    n = len(emb.sentences)
    chosen = sorted(matches) if matches is not None else [j for j in range(n) if emb.groups[j] != "background"]
    chosen.sort(key=lambda j: emb.groups[j] != "rewrite")  # the edit prompt first (a stable sort)
    (x0, x1), (y0, y1) = ranges
    w, h = size
    # rows 0..n-1: the after points, which are labelled; then every other marker drawn (before points, rings,
    # the selection), each with half its size; a point the search dimmed may lie under a label
    xy, radius = [proj.after], [np.full(n, 5.0)]
    for trace in fig.data:
        if "markers" in (trace.mode or "") and trace.x is not None and len(trace.x) and trace.x[0] is not None:
            size = np.broadcast_to(np.asarray(trace.marker.size if trace.marker.size is not None else 6, float),
                                   (len(trace.x),))
            shown_px = np.broadcast_to(np.asarray(trace.marker.opacity if trace.marker.opacity is not None else 1.0,
                                                  float), (len(trace.x),)) > DIM
            xy.append(np.column_stack([trace.x, trace.y]).astype(float)[shown_px])
            radius.append(size[shown_px] / 2 + 1)
    xy, radius = np.concatenate(xy), np.concatenate(radius)
    sx, sy = w / (x1 - x0), h / (y1 - y0)  # px per data unit
    px = np.column_stack([(xy[:, 0] - x0) * sx, (xy[:, 1] - y0) * sy])
    where = place_labels(px, chosen, [label_text(emb.sentences[j]) for j in chosen], (w, h), radius)
    done = [j for j in chosen if j in where]
    # each text is anchored off its point by the gap placed for (beyond the point's own marker and rings)
    anchor = np.array([[proj.after[j, 0] + where[j][1][0] / sx, proj.after[j, 1] + where[j][1][1] / sy]
                       for j in done]).reshape(-1, 2)
    fig.add_trace(go.Scatter(x=anchor[:, 0], y=anchor[:, 1], mode="text",
                             text=[label_text(emb.sentences[j]) for j in done],
                             textposition=[where[j][0] for j in done],
                             textfont=dict(size=LABEL_FONT_PX, color="#222222"), hoverinfo="skip", showlegend=False,
                             cliponaxis=False, meta={"labels": "sentence", "sentences": [shown[j] for j in done]}))
    whose = "sentences matching the search" if matches is not None else "probes of the edit (all but the background)"
    left = len(chosen) - len(done)
    return (f"Text labels: {len(done)} of {len(chosen)} {whose}" +
            (f"; {left} more would overlap a label or a point (their text is in the hover and the table)."
             if left else "."))


def decorate(fig, proj, emb: analysis.EmbeddingSet, shown: list[int], matches: list[int] | None,
              labels: bool, size: tuple[float, float]) -> str | None:
    """Make ``fig`` (drawn for the ``shown`` sentences, in their order) answer in run sentence indices (each
    point's customdata), dim the sentences the search did not match (points and arrows; the legend stays at full
    opacity), fit the axes to the points (one scale for PCA only) and, when ``labels``, add text labels beside
    chosen after points (``_text_labels``); ``size``: the plot area's (width, height), px. Returns the labels'
    caption (None without labels)."""
    local = {g: j for j, g in enumerate(shown)}
    keep = None if matches is None else {local[g] for g in matches}
    _dim(fig, proj, shown, keep)
    if keep is not None:
        _legend_at_full_opacity(fig)
    equal = proj.method == "pca"
    ranges = axis_ranges(proj, equal, size)
    fig.update_xaxes(range=ranges[0], autorange=False)
    fig.update_yaxes(range=ranges[1], autorange=False)
    if not equal:
        fig.layout.yaxis.scaleanchor = None
    return _text_labels(fig, proj, emb, shown, keep, ranges, size) if labels else None
