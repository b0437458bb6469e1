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
