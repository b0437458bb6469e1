"""Figures of an edit's damage to the world: damage against distance (curves per editor) and the ripple map.

Both take the numbers made elsewhere (``evaluation.damage_distance``, ``evaluation.world_locality``,
``projection``) and only draw them (plotly).

Example:
    >>> fig = damage_distance_figure(result.curves, metric="euclidean", pooling="mean")
    >>> fig.write_html("damage_distance.html")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def damage_distance_figure(curves: Mapping[str, Sequence], metric: str, pooling: str,
                           title: str = "World facts' damage against their distance from the edit prompt") -> go.Figure:
    """Two panels, the share of facts whose top answer changed and the mean drop in P(old answer), per
    distance bin (x: the bin's median distance), one line per editor with its 95% interval as error bars.

    ``curves``: editor -> its ``DistanceBin`` list (``damage_distance.damage_curve``); an editor with
    SSS ("+sss") is dashed. Shares and drops are drawn as fractions.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("share of facts whose top answer changed",
                                                        "mean drop in P(old answer)"))
    for i, (editor, bins) in enumerate(curves.items()):
        bins = [b for b in bins if b.facts]
        x = [b.median_distance for b in bins]
        colour = PALETTE[i % len(PALETTE)]
        dash = "dash" if editor.endswith("+sss") else "solid"
        for col, (v, lo, hi) in enumerate((("share_changed", "share_lo", "share_hi"),
                                           ("mean_drop", "drop_lo", "drop_hi")), start=1):
            y = np.array([getattr(b, v) for b in bins])
            err = dict(type="data", symmetric=False, array=np.array([getattr(b, hi) for b in bins]) - y,
                       arrayminus=y - np.array([getattr(b, lo) for b in bins]))
            hover = [f"{editor}<br>bin {b.index + 1}: {b.lo:.3g}–{b.hi:.3g}<br>{b.facts} facts, {b.edits} edits<br>"
                     f"{v}: {getattr(b, v):.4f} [{getattr(b, lo):.4f}, {getattr(b, hi):.4f}]" for b in bins]
            fig.add_trace(go.Scatter(x=x, y=y, error_y=err, mode="lines+markers", name=editor, legendgroup=editor,
                                     showlegend=col == 1, line=dict(color=colour, dash=dash), hovertext=hover,
                                     hoverinfo="text"), row=1, col=col)
    unit = "1 − cos" if metric == "cosine" else "Euclidean"
    for col in (1, 2):
        fig.update_xaxes(title_text=f"distance from the edit prompt ({unit}, {pooling} pooling; bin median)",
                         row=1, col=col)
    fig.update_layout(title=title, height=460, template="plotly_white", legend=dict(orientation="h", y=-0.25))
    return fig


def ripple_figure(coords: np.ndarray, prompt_xy: np.ndarray, value: np.ndarray, changed: np.ndarray,
                  edited: np.ndarray, hover: Sequence[str], colour_title: str, limit: float | None = None,
                  title: str = "", prompt_label: str = "edit prompt", height: int = 620) -> go.Figure:
    """The ripple map: every world fact as a point of a 2-D projection, coloured by ``value``.

    coords: (n, 2) the facts' projected embeddings; prompt_xy: (2,) the edit prompt's, drawn as a star.
    value: (n,) the colour (e.g. the drop in P(old answer), or a paired difference of it), on a diverging
    scale centred at 0 from -limit to +limit (default: the largest |value|). changed: (n,) bool, the facts
    whose top answer changed, ringed in black (their own legend entry); edited: (n,) bool, the facts the
    edit is meant to change, drawn as diamonds. hover: (n,) text per fact (HTML-escaped by the caller).
    """
    value = np.asarray(value, float)
    limit = float(limit if limit is not None else max(1e-9, np.abs(value).max(initial=0.0)))
    keep = ~np.asarray(edited, bool)
    ring = keep & np.asarray(changed, bool)
    text = np.asarray(hover, dtype=object)
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=coords[keep, 0], y=coords[keep, 1], mode="markers", name="world facts", hovertext=text[keep],
        hoverinfo="text", customdata=np.flatnonzero(keep),
        marker=dict(size=6, color=value[keep], colorscale="RdBu_r", cmin=-limit, cmax=limit,
                    colorbar=dict(title=dict(text=colour_title, side="right")), line=dict(width=0))))
    fig.add_trace(go.Scatter(
        x=coords[ring, 0], y=coords[ring, 1], mode="markers", name="top answer changed", hovertext=text[ring],
        hoverinfo="text", customdata=np.flatnonzero(ring),
        marker=dict(size=11, symbol="circle-open", color="black", line=dict(width=1.5))))
    if edited.any():
        fig.add_trace(go.Scatter(
            x=coords[~keep, 0], y=coords[~keep, 1], mode="markers", name="the edited fact", hovertext=text[~keep],
            hoverinfo="text",
            marker=dict(size=12, symbol="diamond", color="#2ca02c", line=dict(width=1, color="black"))))
    fig.add_trace(go.Scatter(x=[prompt_xy[0]], y=[prompt_xy[1]], mode="markers", name=prompt_label,
                             hovertext=[prompt_label], hoverinfo="text",
                             marker=dict(size=18, symbol="star", color="gold", line=dict(width=1.5, color="black"))))
    fig.update_layout(title=title, height=height, template="plotly_white", legend=dict(orientation="h", y=-0.08),
                      xaxis=dict(showticklabels=False, title=""), yaxis=dict(showticklabels=False, title=""))
    return fig
