"""Every figure of a run, built once: pure functions from data to plotly figures (and the probe table).

The app (``app.panels``, ``app.views``), the inspect page (``sss_core.inspect_page``) and the bench
report (``sss_core.evaluation.report``) draw the same figure with the same function here, so one run
looks the same in all three. No Streamlit, no model, no torch: this module sits in the lowest layer
of the core (pyproject.toml, import-linter) and takes plain arrays, frames and records.

Example:
    >>> fig = projection_figure(proj.before, proj.after, groups, hover)
    >>> fig.write_html("projection.html")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

MISSING = "n/a"  # the one spelling of a missing value (no C, no probe of a group, NaN) in every output
# One colour per probe group (colour-blind-safe Okabe-Ito first, then tableau tones).
GROUP_COLOURS = {
    "rewrite": "#D55E00", "paraphrase": "#E69F00", "subject_replace": "#CC79A7",
    "neighbour": "#0072B2", "pre_neighbour": "#56B4E9", "post_neighbour": "#009E73",
    "distract_neighbour": "#6A3D9A", "unrelated_attribute": "#8C564B", "reversed_relation": "#F0E442",
    "one_hop": "#17BECF", "background": "#B0B0B0",
}
METRIC_ORDER = ("reliability", "generality", "locality", "portability")
# How the selected sentence's k nearest neighbours are marked in a projection (the app's caption says the same)
NEIGHBOUR_RINGS = {
    "before": {"name": "k nearest before (full space)", "symbol": "square-open", "colour": "#7F7F7F", "size": 20,
               "words": "grey squares"},
    "after": {"name": "k nearest after (full space)", "symbol": "circle-open", "colour": "#111111", "size": 18,
              "words": "black circles"},
}


def _colour(group: str) -> str:
    """The colour of a probe group's points (grey for a group without one)."""
    return GROUP_COLOURS.get(group, "#7F7F7F")


def _label(group: str, labels: Mapping[str, str] | None) -> str:
    """A probe group's name in the legend: ``labels[group]`` if given, else the group itself."""
    return (labels or {}).get(group, group)


@dataclass(frozen=True)
class Colouring:
    """A measure to colour the projection's points by, in place of the probe group.

    ``before`` / ``after``: (n,) values per sentence (NaN: no value, drawn grey); a measure with
    one value per sentence (damage, distance moved) passes the same array twice. ``title`` names
    the measure and its unit and becomes the colour bar's title; ``log`` colours by log10 of the
    value (for lambda_max, which spans decades) with ticks labelled in the value itself.
    """

    name: str
    title: str
    before: np.ndarray  # (n,)
    after: np.ndarray  # (n,)
    log: bool = False
    diverging: bool = False  # centred on 0 (a change: blue = fell, red = rose)


def _colour_values(c: Colouring) -> tuple[np.ndarray, np.ndarray, dict]:
    """The numbers the colour scale is drawn over (log10 where ``c.log``) and the layout's coloraxis."""
    vb, va = np.asarray(c.before, dtype=float), np.asarray(c.after, dtype=float)
    if c.log:
        with np.errstate(divide="ignore", invalid="ignore"):
            vb, va = np.where(vb > 0, np.log10(vb), np.nan), np.where(va > 0, np.log10(va), np.nan)
    both = np.concatenate([vb, va])
    both = both[np.isfinite(both)]
    axis = {"colorbar": {"title": {"text": c.title, "side": "right"}, "thickness": 14, "len": 0.9},
            "colorscale": "RdBu_r" if c.diverging else "Viridis"}
    if both.size:
        lo, hi = float(both.min()), float(both.max())
        if c.diverging:
            lo, hi = -max(abs(lo), abs(hi), 1e-12), max(abs(lo), abs(hi), 1e-12)
        axis.update(cmin=lo, cmax=hi if hi > lo else lo + 1e-12)
        if c.log:
            ticks = [e for e in range(math.floor(lo), math.ceil(hi) + 1)]
            axis["colorbar"].update(tickvals=ticks, ticktext=[f"1e{e}" for e in ticks])
    return vb, va, axis


def _axes(col: int) -> tuple[str, str]:
    """Plotly's names of the x and y axis of subplot column ``col`` (1-based) in a one-row figure."""
    return ("x", "y") if col == 1 else (f"x{col}", f"y{col}")


def _draw_projection(fig: go.Figure, before: np.ndarray, after: np.ndarray, groups: Sequence[str],
                     hover: Sequence[str], labels: Mapping[str, str] | None, arrows: bool, highlight: Sequence[int],
                     col: int = 1, showlegend: bool = True, colour: Colouring | None = None,
                     neighbours: tuple[Sequence[int], Sequence[int]] = ((), ())) -> None:
    """Add one projection (points before and after, arrows, highlights) to subplot column ``col``."""
    n = len(groups)
    xa, ya = _axes(col)
    sub = {} if col == 1 else {"xaxis": xa, "yaxis": ya}
    order = list(dict.fromkeys(groups))
    if "background" in order:  # background first, so the edit's own groups are drawn on top
        order.remove("background")
        order.insert(0, "background")
    if colour is None:
        for group in order:
            idx = [i for i in range(n) if groups[i] == group]
            c, name = _colour(group), _label(group, labels)
            size = 13 if group == "rewrite" else 9
            for when, xy, symbol in (("before", before, "circle-open"), ("after", after, "circle")):
                fig.add_trace(go.Scatter(
                    x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name, legendgroup=group,
                    showlegend=showlegend and when == "after", customdata=idx,
                    marker=dict(color=c, size=size, symbol=symbol, line=dict(width=1.5, color=c)),
                    text=[hover[i] for i in idx], hovertemplate=f"<b>{when}</b><br>%{{text}}<extra>{name}</extra>",
                    meta={"when": when, "group": group}, **sub))
    else:
        vb, va, _ = _colour_values(colour)
        for when, xy, values, symbol in (("before", before, vb, "circle-open"), ("after", after, va, "circle")):
            has = [i for i in order_indices(groups, order) if np.isfinite(values[i])]
            none = [i for i in order_indices(groups, order) if not np.isfinite(values[i])]
            sizes = [14 if groups[i] == "rewrite" else 9 for i in has]
            fig.add_trace(go.Scatter(
                x=xy[has, 0], y=xy[has, 1], mode="markers", name=f"{when} ({colour.name})",
                legendgroup=when, showlegend=showlegend, customdata=has,
                marker=dict(color=values[has], coloraxis="coloraxis", size=sizes,
                            symbol=[("diamond" if groups[i] == "rewrite" else "circle")
                                    + ("-open" if when == "before" else "") for i in has],
                            line=dict(width=1.5, color=values[has], coloraxis="coloraxis")
                            if when == "before" else dict(width=0.5, color="#333333")),
                text=[hover[i] for i in has],
                hovertemplate=f"<b>{when}</b><br>%{{text}}<extra>{colour.name}</extra>",
                meta={"when": when, "colour": colour.name}, **sub))
            if none:
                fig.add_trace(go.Scatter(
                    x=xy[none, 0], y=xy[none, 1], mode="markers", name=f"{when}: no value",
                    legendgroup=f"{when}-none", showlegend=showlegend and when == "after", customdata=none,
                    marker=dict(color="#C8C8C8", size=8, symbol=symbol, line=dict(width=1, color="#A0A0A0")),
                    text=[hover[i] for i in none],
                    hovertemplate=f"<b>{when}</b><br>%{{text}}<extra>no {colour.name}</extra>",
                    meta={"when": when, "colour": "none"}, **sub))
    if arrows:
        span = float(np.ptp(np.concatenate([before, after]), axis=0).max()) if n else 0.0
        # one layout update for all arrows: plotly re-validates every annotation on each add_annotation
        arrow_list = [dict(x=after[i, 0], y=after[i, 1], ax=before[i, 0], ay=before[i, 1], xref=xa, yref=ya,
                           axref=xa, ayref=ya, showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.2,
                           arrowcolor=_colour(groups[i]) if colour is None else "#666666",
                           opacity=0.45 if groups[i] == "background" else 0.9, text="")
                      for i in range(n)  # an arrow that did not move visibly would be a dot
                      if not (span and np.linalg.norm(after[i] - before[i]) < 1e-3 * span)]
        fig.update_layout(annotations=[*fig.layout.annotations, *arrow_list])
    for idx, xy, when in ((neighbours[0], before, "before"), (neighbours[1], after, "after")):
        if len(idx):
            idx = list(idx)
            ring = NEIGHBOUR_RINGS[when]
            # an open symbol is stroked in marker.color (its line.color is not used): the ring's colour goes there
            fig.add_trace(go.Scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=ring["name"],
                                     legendgroup=ring["name"], showlegend=showlegend, hoverinfo="skip",
                                     marker=dict(size=ring["size"], symbol=ring["symbol"], color=ring["colour"],
                                                 line=dict(width=2, color=ring["colour"])),
                                     meta={"neighbours": when}, **sub))
    for i in highlight:
        fig.add_trace(go.Scatter(x=[after[i, 0]], y=[after[i, 1]], mode="markers", showlegend=False,
                                 hoverinfo="skip",  # an open symbol is stroked in marker.color
                                 marker=dict(size=24, symbol="circle-open", color="black",
                                             line=dict(width=3, color="black")),
                                 meta={"selected": int(i)}, **sub))


def order_indices(groups: Sequence[str], order: Sequence[str]) -> list[int]:
    """Sentence indices sorted by ``order`` of their group (background first: drawn under the rest)."""
    rank = {g: j for j, g in enumerate(order)}
    return sorted(range(len(groups)), key=lambda i: rank.get(groups[i], len(rank)))


def projection_figure(before: np.ndarray, after: np.ndarray, groups: Sequence[str], hover: Sequence[str],
                      title: str = "", labels: Mapping[str, str] | None = None, arrows: bool = True,
                      highlight: Sequence[int] = (), height: int = 560, colour: Colouring | None = None,
                      axis_titles: tuple[str, str] = ("", ""),
                      neighbours: tuple[Sequence[int], Sequence[int]] = ((), ())) -> go.Figure:
    """Sentences before (hollow) and after (filled) an edit, an arrow from each before to its after.

    before, after: (n, 2) coordinates of the same n sentences; groups, hover: n strings. Each
    point's ``customdata`` is its sentence index, so a selection maps back to the sentence.
    ``colour``: colour by a measure (with a colour bar naming its unit) instead of by group;
    ``neighbours``: (indices near the selected sentence before, after), ringed in the plot.
    """
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    n = len(groups)
    if before.shape != (n, 2) or after.shape != (n, 2) or len(hover) != n:
        raise ValueError(f"expected ({n}, 2) coordinates and {n} hover texts")
    fig = go.Figure()
    _draw_projection(fig, before, after, groups, hover, labels, arrows, highlight, colour=colour,
                     neighbours=neighbours)
    _projection_layout(fig, title, height, colour, axis_titles, columns=1)
    return fig


def moves_figure(names: Sequence[str], moved: Sequence[float], groups: Sequence[str], notes: Sequence[str],
                 labels: Mapping[str, str] | None = None, height: int | None = None) -> go.Figure:
    """How far each sentence's last hidden state moved with an edit: one horizontal bar per sentence, in the
    order given (the first on top), coloured by group (named in the hover), each labelled with its sentence and,
    under it, ``notes[i]`` (e.g. "kept its answer"; also each bar's ``text``, shown in the hover).

    names, moved, groups, notes: n each; ``moved`` is ||h_after - h_before|| in the model's units (the full hidden
    space, not a projection). ``height`` in px (default: 46 px a bar and the axis). Raises ValueError when the
    lengths differ.
    """
    n = len(names)
    if not (len(moved) == len(groups) == len(notes) == n):
        raise ValueError(f"expected {n} distances, groups and notes, one per sentence")
    fig = go.Figure()
    for group in dict.fromkeys(groups):
        idx = [i for i in range(n) if groups[i] == group]
        fig.add_trace(go.Bar(
            y=[names[i] for i in idx], x=[float(moved[i]) for i in idx], orientation="h",
            name=_label(group, labels), marker_color=_colour(group), text=[notes[i] for i in idx],
            textposition="none", meta={"group": group},
            hovertemplate="%{y}<br>%{text}<br>moved %{x:.2f}<extra>%{fullData.name}</extra>"))
    # no legend: each bar is named by its sentence and note, its kind is in the hover (beside long sentence labels
    # the plot area is narrow, and plotly stacked a legend one entry a row); the notes sit under the sentences,
    # where no bar length can clip them
    order = list(names)[::-1]
    ticks = {names[i]: f"{names[i]}<br><i>{notes[i]}</i>" for i in range(n)}
    fig.update_layout(height=height or 46 * n + 70, barmode="overlay", bargap=0.3, hovermode="closest",
                      margin=dict(l=10, r=10, t=10, b=10), showlegend=False,
                      xaxis=dict(title="how far it moved (the model's units)", rangemode="tozero"),
                      yaxis=dict(categoryorder="array", categoryarray=order, tickvals=order,
                                 ticktext=[ticks[y] for y in order], automargin=True,
                                 tickfont=dict(size=13)))  # read on a projector
    return fig


def _projection_layout(fig: go.Figure, title: str, height: int, colour: Colouring | None,
                       axis_titles: tuple[str, str], columns: int) -> None:
    """Legend, colour bar, axis titles and equal axis scales of a projection figure with ``columns`` panels."""
    legend = ("hollow = before, filled = after:" if colour is None
              else "hollow = before, filled = after; colour:")
    fig.update_layout(title=title or None, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      # the legend's title above its items: beside them, plotly wraps the items as if it took
                      # no room, and the last item runs past the figure's right edge
                      legend=dict(title=dict(text=legend, side="top"), itemsizing="constant", orientation="h",
                                  yanchor="top", y=-0.08, xanchor="left", x=0), hovermode="closest")
    if colour is not None:
        fig.update_layout(coloraxis=_colour_values(colour)[2])
    for col in range(1, columns + 1):
        xa, ya = _axes(col)
        x_layout, y_layout = f"xaxis{col if col > 1 else ''}", f"yaxis{col if col > 1 else ''}"
        fig.update_layout({x_layout: dict(showticklabels=False, zeroline=False, title=axis_titles[0] or None),
                           y_layout: dict(showticklabels=False, zeroline=False,
                                          title=axis_titles[1] if col == 1 and axis_titles[1] else None,
                                          **({"scaleanchor": xa, "scaleratio": 1} if col == 1 else {}))})


def joint_projection_figure(coords: Mapping[str, tuple[np.ndarray, np.ndarray]], groups: Sequence[str],
                            hover: Mapping[str, Sequence[str]], labels: Mapping[str, str] | None = None,
                            highlight: Sequence[int] = (), axis_titles: tuple[str, str] = ("", ""),
                            height: int = 560, title: str = "") -> go.Figure:
    """Two (or more) runs of the same sentences side by side, in the coordinates of one joint fit.

    ``coords``: run label -> (before (n, 2), after (n, 2)); the panels share their axes, so a
    point at the same place is at the same place in the fit. ``highlight``: sentence indices
    ringed in every panel (the synced selection).
    """
    from plotly.subplots import make_subplots

    names = list(coords)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_xaxes="all", shared_yaxes="all",
                        horizontal_spacing=0.04)
    for col, name in enumerate(names, start=1):
        before, after = (np.asarray(a, dtype=float) for a in coords[name])
        _draw_projection(fig, before, after, groups, hover[name], labels, True, highlight, col=col,
                         showlegend=col == 1)
    _projection_layout(fig, title, height, None, axis_titles, columns=len(names))
    return fig


def delta_norm_figure(norms: Mapping[str, float], title: str = "Weight change per parameter") -> go.Figure:
    """Bar chart of the Frobenius norm of each edited parameter's change."""
    names = list(norms)
    fig = go.Figure(go.Bar(x=[norms[k] for k in names], y=names, orientation="h", marker_color="#0072B2",
                           hovertemplate="%{y}<br>||ΔW|| = %{x:.4g}<extra></extra>"))
    # automargin: the margins grow to hold the parameter names and the axis title (a fixed 10 px margin
    # clipped "transformer.h.0.mlp.c_proj.weight" to "ht" in a page of its own)
    fig.update_layout(title=title, height=max(220, 130 + 28 * len(names)), margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title=dict(text="||ΔW|| (Frobenius)", standoff=8), automargin=True))
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def probability_figure(prompts: Sequence[str], before: Sequence[float], after: Sequence[float],
                       title: str = "P(new target) before and after") -> go.Figure:
    """Grouped bars of one probability per prompt, before and after."""
    short = [p if len(p) <= 48 else p[:45] + "..." for p in prompts]
    fig = go.Figure([go.Bar(name="before", x=short, y=list(before), marker_color="#B0B0B0", hovertext=list(prompts)),
                     go.Bar(name="after", x=short, y=list(after), marker_color="#D55E00", hovertext=list(prompts))])
    fig.update_layout(barmode="group", title=title, height=360, yaxis=dict(range=[0, 1], title="probability"),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def metrics_comparison_figure(metrics: Mapping[str, Mapping[str, float]],
                              keys: Sequence[str] = METRIC_ORDER, title: str = "Metrics") -> go.Figure:
    """Grouped bars: one group per metric, one bar per run (label -> metrics)."""
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"]
    fig = go.Figure()
    for j, (label, m) in enumerate(metrics.items()):
        ys = [m.get(k, math.nan) for k in keys]
        fig.add_trace(go.Bar(name=label, x=list(keys), y=ys, marker_color=palette[j % len(palette)],
                             text=[f"{y:.2f}" if not math.isnan(y) else "n/a" for y in ys], textposition="outside"))
    fig.update_layout(barmode="group", title=title, height=360, yaxis=dict(range=[0, 1.15], title="score"),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def sweep_figure(c_values: Sequence[float], metrics: Mapping[str, Sequence[float]],
                 lambda_after: Sequence[float], lambda_before: float | None = None,
                 title: str = "Metrics and lambda_max against C") -> go.Figure:
    """Reliability, generality, locality (left axis) and lambda_max after the edit (right axis) vs C."""
    fig = go.Figure()
    palette = {"reliability": "#D55E00", "generality": "#E69F00", "locality": "#0072B2", "portability": "#CC79A7"}
    for name, ys in metrics.items():
        fig.add_trace(go.Scatter(x=list(c_values), y=list(ys), name=name, mode="lines+markers",
                                 line=dict(color=palette.get(name))))
    fig.add_trace(go.Scatter(x=list(c_values), y=list(lambda_after), name="λ_max after (new target)", mode="lines+markers",
                             yaxis="y2", line=dict(color="black", dash="dot")))
    if lambda_before is not None and lambda_before > 0:
        fig.add_hline(y=lambda_before, yref="y2", line=dict(color="grey", dash="dash"))
        # on a log axis an annotation's y is log10 of the value (add_hline's own annotation is placed at the
        # value itself, far from its line)
        fig.add_annotation(text="λ_max before (new target)", x=0, xref="paper", xanchor="left",
                           y=math.log10(lambda_before), yref="y2", yanchor="bottom", showarrow=False,
                           font=dict(color="grey"))
    fig.update_layout(title=title, height=420, xaxis=dict(title="C", range=[-0.02, 1.02]),
                      yaxis=dict(title="score", range=[0, 1.05]),
                      yaxis2=dict(title="λ_max after, against the new target (log scale)", overlaying="y", side="right", type="log",
                                  showgrid=False, exponentformat="power", **log_ticks(
                                      [*lambda_after, *([lambda_before] if lambda_before is not None else [])])),
                      legend=dict(orientation="h", y=-0.2), margin=dict(l=10, r=10, t=40, b=10))
    return fig


def log_ticks(values: Sequence[float | None]) -> dict:
    """Tick values and labels of a log axis over ``values``: one per power of ten ("1e-4"), plus 2
    and 5 times it when the data span under two decades; {} when no value is positive.

    Plotly's own log ticks label arbitrary values ("529.1305µ") when the span is short.
    """
    pos = [float(v) for v in values if v is not None and not math.isnan(float(v)) and float(v) > 0]
    if not pos:
        return {}
    lo, hi = math.floor(math.log10(min(pos))), math.ceil(math.log10(max(pos)))
    hi = max(hi, lo + 1)
    mults = (1, 2, 5) if hi - lo <= 2 else (1,)
    ticks = [m * 10.0 ** e for e in range(lo, hi + 1) for m in mults if m * 10.0 ** e <= 10.0 ** hi]
    return {"tickvals": ticks, "ticktext": [f"{t:.0e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")
                                            for t in ticks]}


def sequential_figure(n: Sequence[int], series: Mapping[str, Sequence[float]],
                      title: str = "As edits accumulate") -> go.Figure:
    """Lines of each series against the number of edits applied."""
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"]
    fig = go.Figure()
    for j, (name, ys) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(n), y=list(ys), name=name, mode="lines+markers",
                                 line=dict(color=palette[j % len(palette)])))
    fig.update_layout(title=title, height=380, xaxis=dict(title="edits applied (n)", dtick=1 if len(n) < 15 else None),
                      yaxis=dict(title="score", range=[0, 1.05]), legend=dict(orientation="h", y=-0.25),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


# --- the Hypothesis view -----------------------------------------------------------------------------

HYPOTHESIS_X = {"lambda_max_before": "λ_max before the edit (log scale; ‖∇_h J‖², J in nats)",
                "knn_distance": "kNN distance of the edit prompt (mean euclidean distance to its k nearest "
                                "world prompts, hidden-state units)"}
# the axis titles of the hypothesis scatter, broken into lines that fit a panel half a page wide
HYPOTHESIS_AXIS_TITLES = {"lambda_max_before": "λ_max before the edit<br>(log scale; ‖∇_h J‖², J in nats)",
                          "knn_distance": "kNN distance of the edit prompt<br>(mean euclidean distance to its k "
                                          "nearest<br>world prompts, hidden-state units)",
                          "locality_drop": "damage<br>(1 − locality)"}
GL_POINTS = 2000  # more points than this in one trace: WebGL (an SVG scatter of 10 000 points is slow)


def hypothesis_scatter(rows, x_columns: Sequence[str], rho: Mapping[tuple[str, str], float] | None = None,
                       title: str = "Sparsity before the edit against the damage it did") -> go.Figure:
    """One panel per (editor, measure): each edit's measure on x against its damage (1 - locality) on y.

    ``rows``: a DataFrame with columns editor, prompt, target_new, locality_drop and ``x_columns``;
    each point's ``customdata`` is ``[row label of rows, editor]`` (a click maps back to the edit).
    ``rho``: (editor, x column) -> Spearman rho, shown in the panel's title. lambda_max is drawn on
    a log axis (it spans decades).
    """
    from plotly.subplots import make_subplots

    editors = list(dict.fromkeys(rows["editor"]))
    titles = [f"{e}: {HYPOTHESIS_X[x].split(' (')[0]}" + (f", ρ = {rho[(e, x)]:+.2f}" if rho and (e, x) in rho
                                                          and not math.isnan(rho[(e, x)]) else "")
              for e in editors for x in x_columns]
    fig = make_subplots(rows=max(1, len(editors)), cols=max(1, len(x_columns)), subplot_titles=titles,
                        vertical_spacing=0.22 / max(1, len(editors)), horizontal_spacing=0.08)
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B"]
    for i, editor in enumerate(editors, start=1):
        part = rows[rows["editor"] == editor]
        for j, x in enumerate(x_columns, start=1):
            ok = part[part[x].notna() & part["locality_drop"].notna()]
            kind = go.Scattergl if len(ok) > GL_POINTS else go.Scatter
            fig.add_trace(kind(
                x=ok[x], y=ok["locality_drop"], mode="markers", name=editor, legendgroup=editor,
                showlegend=j == 1, customdata=[[label, editor] for label in ok.index],
                marker=dict(color=palette[(i - 1) % len(palette)], size=7, opacity=0.7),
                text=[f"{p} → {t}" for p, t in zip(ok["prompt"], ok["target_new"])],
                hovertemplate=(f"<b>{editor}</b><br>%{{text}}<br>{x} = %{{x:.3g}}<br>damage = %{{y:.3f}}"
                               "<extra>click: open in the Edit view</extra>")), row=i, col=j)
            fig.update_xaxes(title_text=HYPOTHESIS_AXIS_TITLES[x] if i == len(editors) else None,
                             type="log" if x == "lambda_max_before" else None, row=i, col=j,
                             exponentformat="power", automargin=True,
                             **(log_ticks(rows[x]) if x == "lambda_max_before" else {}))
            fig.update_yaxes(title_text=HYPOTHESIS_AXIS_TITLES["locality_drop"] if j == 1 else None, row=i, col=j,
                             automargin=True)
    fig.update_layout(title=title, height=200 + 300 * max(1, len(editors)), margin=dict(l=10, r=10, t=70, b=10),
                      # the legend in the top margin, centred, between the title and the toolbar: under the
                      # panels it sat on the x-axis titles (two or three lines each)
                      legend=dict(orientation="h", yref="container", y=1, yanchor="top", x=0.5, xanchor="center"),
                      clickmode="event+select", hovermode="closest")
    return fig


def sss_effect_figure(effects, title: str = "What adding SSS changed, paired (with SSS − without)") -> go.Figure:
    """Mean paired difference per metric and pair of editors, with its bootstrap 95% CI as error bars.

    ``effects``: a DataFrame with columns "with SSS", "without SSS", metric, "mean difference",
    "CI low", "CI high" (``app.hypothesis.sss_effect_frame``); differences are in percentage points.
    """
    fig = go.Figure()
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7"]
    for j, ((with_sss, without), part) in enumerate(effects.groupby(["with SSS", "without SSS"], sort=False)):
        mean = 100 * part["mean difference"].to_numpy(float)
        lo, hi = 100 * part["CI low"].to_numpy(float), 100 * part["CI high"].to_numpy(float)
        fig.add_trace(go.Scatter(
            x=list(part["metric"]), y=mean, mode="markers", name=f"{with_sss} − {without}",
            marker=dict(size=11, color=palette[j % len(palette)]),
            error_y=dict(type="data", symmetric=False, array=hi - mean, arrayminus=mean - lo),
            hovertemplate="%{x}: %{y:+.2f} points<extra>" + f"{with_sss} − {without}" + "</extra>"))
    fig.add_hline(y=0, line=dict(color="grey", dash="dash"))
    fig.update_layout(title=title, height=360, yaxis_title="difference (percentage points, 95% CI)",
                      xaxis_title="metric", margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def paired_difference_figure(prompts: Sequence[str], groups: Sequence[str], diff: Sequence[float],
                             labels: tuple[str, str] = ("A", "B"),
                             title: str = "Change of P(old answer) under A minus under B, per probe") -> go.Figure:
    """One horizontal bar per probe: ΔP(old) under A minus ΔP(old) under B (probability).

    Negative: A took more probability from the old answer than B did (for a locality probe, more damage).
    """
    short = [p if len(p) <= 60 else p[:57] + "..." for p in prompts]
    values = [float(v) for v in diff]
    fig = go.Figure(go.Bar(x=values, y=[f"{s} ({g})" for s, g in zip(short, groups)], orientation="h",
                           marker_color=[_colour(g) for g in groups], customdata=list(prompts),
                           hovertemplate="%{customdata}<br>ΔP(old) " + f"{labels[0]} − {labels[1]}"
                                         + " = %{x:+.4f}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="grey"))
    fig.update_layout(title=title, height=max(240, 80 + 22 * len(values)), margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title=f"ΔP(old) under {labels[0]} − under {labels[1]} (probability)")
    fig.update_yaxes(autorange="reversed")
    return fig


def trajectory_figure(histories: Mapping[str, Sequence[Mapping[str, float]]],
                      title: str = "Optimisation per step: edit loss and SSS term") -> go.Figure:
    """Edit loss (solid) and SSS term (dotted, right axis, log) per optimisation step, one colour per run.

    ``histories``: run label -> one dict per step with "loss" and "sss" (NaN when the run has no SSS term).
    """
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7"]
    fig = go.Figure()
    for j, (name, steps) in enumerate(histories.items()):
        x = list(range(1, len(steps) + 1))
        colour = palette[j % len(palette)]
        fig.add_trace(go.Scatter(x=x, y=[s.get("loss", math.nan) for s in steps], mode="lines+markers",
                                 name=f"{name}: edit loss", line=dict(color=colour)))
        sss = [s.get("sss", math.nan) for s in steps]
        if any(v is not None and not math.isnan(v) for v in sss):
            fig.add_trace(go.Scatter(x=x, y=sss, mode="lines+markers", name=f"{name}: SSS term", yaxis="y2",
                                     line=dict(color=colour, dash="dot")))
    sss_values = [s.get("sss") for steps in histories.values() for s in steps]
    fig.update_layout(title=title, height=380, xaxis_title="optimisation step",
                      yaxis=dict(title="edit loss (NLL of the new target, nats)"),
                      yaxis2=dict(title="SSS term (λ_max, log scale)", overlaying="y", side="right", type="log",
                                  showgrid=False, exponentformat="power", **log_ticks(sss_values)),
                      legend=dict(orientation="h", y=-0.25), margin=dict(l=10, r=10, t=40, b=10))
    return fig


# --- colourings of a run's sentences --------------------------------------------------------------------------

def lambda_colouring(sparsity: Sequence[Any], title: str, name: str = "λ_max") -> Colouring:
    """Colour by each sentence's lambda_max (before and after the edit) on a log scale.

    ``sparsity``: the run's per-sentence records (``sss_core.sparsity.SentenceSparsity``, in the
    order of the embeddings' sentences); ``title``: the colour bar's title, naming the unit.
    """
    return Colouring(name, title, np.array([r.lambda_max_before for r in sparsity], dtype=float),
                     np.array([r.lambda_max_after for r in sparsity], dtype=float), log=True)


# --- the probe table ----------------------------------------------------------------------------------------

SPARSITY_COLUMNS = ("lambda_max before", "lambda_max after", "kNN distance before", "kNN distance after")
COMPACT_COLUMNS = ("group", "prompt", "top-1", "P(old) after", "P(new) after", "score")


TOP1_BADGE_HELP = ("same, or FLIPPED: ✓ to the new target (a flip the edit wants), “off target” where the edit "
                   "wanted the new target but the top-1 went elsewhere, ✗ damage where the edit should have left it")


def token_begins(token: str, answer: str | None) -> bool:
    """Does the top-1 ``token`` begin ``answer`` (the model is on its way to saying it)? Spaces around both are
    ignored (" Czech" begins "Czech Republic", "M" begins "Morocco"); a blank token or no answer: False."""
    t = token.strip()
    return answer is not None and bool(t) and answer.strip().startswith(t)


def reaches_new_target(row: Any) -> bool:
    """Is the top-1 token after the edit the start of the row's new answer (``row.new``)? (``token_begins``)"""
    return token_begins(row.top1_after, row.new)


def top1_badge(row: Any) -> str:
    """The top-1 column: same, or FLIPPED with a tick where the edit wants the flip and it reached the new
    target, "off target" where a wanted flip went to another token, and a cross where it is damage."""
    if not row.flipped:
        return "same"
    if row.wanted_flip is True:
        return "FLIPPED ✓" if reaches_new_target(row) else "FLIPPED off target"
    if row.wanted_flip is False:
        return "FLIPPED ✗ damage"
    return "FLIPPED"


def _sparsity_cells(record: Any) -> dict[str, float]:
    """The four sparsity columns of one probe (``SPARSITY_COLUMNS``); {} for a probe without a record."""
    if record is None:
        return {}
    return dict(zip(SPARSITY_COLUMNS, (record.lambda_max_before, record.lambda_max_after,
                                       record.knn_distance_before, record.knn_distance_after)))


def probe_frame(run: Any, labels: Mapping[str, str] | None = None, sparsity: bool = False) -> pd.DataFrame:
    """The probe table of a run as a DataFrame, one row per probe (the app's CSV export holds it whole).

    ``run``: an ``analysis.EditRun`` (its ``rows`` and ``sparsity_of``; duck-typed, as this module sits
    below the analysis); ``labels``: group -> name shown. ``sparsity`` adds ``SPARSITY_COLUMNS`` for
    the probes the run measured them on (the inspect page).
    """
    rows = []
    for r in run.rows:
        rows.append({"group": _label(r.group, labels), "prompt": r.prompt,
                     "top-1": top1_badge(r), "top-1 before": r.top1_before, "top-1 after": r.top1_after,
                     "old answer": r.old, "P(old) before": r.p_old_before, "P(old) after": r.p_old_after,
                     "new answer": r.new, "P(new) before": r.p_new_before, "P(new) after": r.p_new_after,
                     "ΔP(new)": r.p_new_after - r.p_new_before, "score": r.score,
                     **(_sparsity_cells(run.sparsity_of(r.prompt)) if sparsity else {})})
    return pd.DataFrame(rows)


def probe_display(df: pd.DataFrame) -> pd.DataFrame:
    """The probe table as shown on a page: the two top-1 columns and the two answers each merged into one
    "before → after" / "old → new" column and ΔP(new) left out (all of them are in ``probe_frame``), so
    P(old), P(new) and the score fit without a horizontal scroll at 1440 px."""
    shown = df.drop(columns=["top-1 before", "top-1 after", "old answer", "new answer", "ΔP(new)"])
    shown.insert(3, "top-1 before → after", df["top-1 before"].astype(str) + " → " + df["top-1 after"].astype(str))
    shown.insert(4, "answer old → new", df["old answer"].fillna(MISSING).astype(str) + " → " + df["new answer"])
    return shown


COMPACT_BADGES = {"FLIPPED ✓": "✓", "FLIPPED off target": "off target", "FLIPPED ✗ damage": "✗",
                  "FLIPPED": "flipped"}


def probe_compact(df: pd.DataFrame) -> pd.DataFrame:
    """The probe table in half-width columns (Compare, the Class story): ``COMPACT_COLUMNS``, with the top-1
    status shortened (``COMPACT_BADGES``) and followed by the token the top-1 moved to ("✓ → ' Czech'",
    "off target → 'a'", "✗ → ' Czech'", "same"), so a flip says where it went in a narrow column."""
    shown = df[list(COMPACT_COLUMNS)].copy()
    moved = df["top-1"] != "same"
    shown.loc[moved, "top-1"] = (df.loc[moved, "top-1"].map(COMPACT_BADGES) + " → "
                                 + df.loc[moved, "top-1 after"].map(repr))
    return shown


def trajectory_steps(trajectory: Sequence[Mapping[str, float]]) -> list[dict]:
    """A run's optimisation trajectory as ``trajectory_figure`` draws it: one dict per step with "loss"
    (the edit loss, nats) and "sss" (the SSS term, NaN without it); [] when the editor has no steps."""
    return [{"loss": float(s.get("loss", math.nan)), "sss": float(s.get("sss", math.nan))} for s in trajectory]


# --- the bench report: means over seeds with their std ------------------------------------------------------------

def seeded_sweep_figure(stats: pd.DataFrame, labels: Mapping[str, str],
                        metrics: Sequence[str] = ("reliability", "generality", "locality"),
                        title: str = "Ablation on C (paper Fig. 3)") -> go.Figure:
    """Metrics against C with std error bars, one line per (editor, metric), in percent.

    ``stats``: indexed by (editor, C), columns "<metric>:mean" and "<metric>:std" (fractions, over
    seeds; ``report.seed_stats``); ``labels``: metric -> name in the legend.
    """
    fig = go.Figure()
    for editor in dict.fromkeys(e for e, _ in stats.index):
        part = stats.loc[editor]
        for m in metrics:
            fig.add_trace(go.Scatter(x=list(part.index), y=100 * part[f"{m}:mean"], mode="lines+markers",
                                     error_y=dict(type="data", array=(100 * part[f"{m}:std"]).fillna(0)),
                                     name=f"{editor}: {labels[m]}"))
    fig.update_layout(title=title, xaxis_title="C", yaxis_title="accuracy (%)")
    return fig


def seeded_sequential_figure(lines: Sequence[tuple[str, str, pd.DataFrame]], metrics: Sequence[str],
                             labels: Mapping[str, str], title: str = "Sequential editing (paper Table 2)") -> go.Figure:
    """One panel per metric against the number of sequential edits n (log x), in percent with std error bars.

    ``lines``: (what the line shows, e.g. "right after each"; its dash; stats indexed by (editor, n)
    with "<metric>:mean" and "<metric>:std" columns); one line per editor and entry.
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[labels[m] for m in metrics])
    for what, dash, stats in lines:
        for i, m in enumerate(metrics, start=1):
            for editor in dict.fromkeys(e for e, _ in stats.index):
                s = stats.loc[editor].sort_index()
                fig.add_trace(go.Scatter(
                    x=list(s.index), y=100 * s[f"{m}:mean"], line=dict(dash=dash), showlegend=i == 1,
                    error_y=dict(type="data", array=(100 * s[f"{m}:std"]).fillna(0)),
                    name=f"{editor} ({what})"), row=1, col=i)
    fig.update_xaxes(type="log", title_text="n edits")
    fig.update_yaxes(title_text="accuracy (%)", col=1)
    fig.update_layout(title=title)
    return fig
