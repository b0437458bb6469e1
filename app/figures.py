"""Pure functions from data to plotly figures. No Streamlit, no model: easy to test and export.

Example:
    >>> fig = projection_figure(proj.before, proj.after, groups, hover)
    >>> fig.write_html("projection.html")
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from sss_core.evaluation.report import html_page

# One colour per probe group (colour-blind-safe Okabe-Ito first, then tableau tones).
GROUP_COLOURS = {
    "rewrite": "#D55E00", "paraphrase": "#E69F00", "subject_replace": "#CC79A7",
    "neighbour": "#0072B2", "pre_neighbour": "#56B4E9", "post_neighbour": "#009E73",
    "distract_neighbour": "#6A3D9A", "unrelated_attribute": "#8C564B", "reversed_relation": "#F0E442",
    "one_hop": "#17BECF", "background": "#B0B0B0",
}
METRIC_ORDER = ("reliability", "generality", "locality", "portability")


def _colour(group: str) -> str:
    """The colour of a probe group's points (grey for a group without one)."""
    return GROUP_COLOURS.get(group, "#7F7F7F")


def _label(group: str, labels: Mapping[str, str] | None) -> str:
    """A probe group's name in the legend: ``labels[group]`` if given, else the group itself."""
    return (labels or {}).get(group, group)


def projection_figure(before: np.ndarray, after: np.ndarray, groups: Sequence[str], hover: Sequence[str],
                      title: str = "", labels: Mapping[str, str] | None = None, arrows: bool = True,
                      highlight: Sequence[int] = (), height: int = 560) -> go.Figure:
    """Sentences before (hollow) and after (filled) an edit, an arrow from each before to its after.

    before, after: (n, 2) coordinates of the same n sentences; groups, hover: n strings. Each
    point's ``customdata`` is its sentence index, so a selection maps back to the sentence.
    """
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    n = len(groups)
    if before.shape != (n, 2) or after.shape != (n, 2) or len(hover) != n:
        raise ValueError(f"expected ({n}, 2) coordinates and {n} hover texts")
    fig = go.Figure()
    order = list(dict.fromkeys(groups))
    if "background" in order:  # background first, so the edit's own groups are drawn on top
        order.remove("background")
        order.insert(0, "background")
    for group in order:
        idx = [i for i in range(n) if groups[i] == group]
        colour, name = _colour(group), _label(group, labels)
        size = 13 if group == "rewrite" else 9
        for when, xy, symbol in (("before", before, "circle-open"), ("after", after, "circle")):
            fig.add_trace(go.Scatter(
                x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name, legendgroup=group,
                showlegend=when == "after", customdata=idx,
                marker=dict(color=colour, size=size, symbol=symbol, line=dict(width=1.5, color=colour)),
                text=[hover[i] for i in idx],
                hovertemplate=f"<b>{when}</b><br>%{{text}}<extra>{name}</extra>",
                meta={"when": when, "group": group}))
    if arrows:
        span = float(np.ptp(np.concatenate([before, after]), axis=0).max()) if n else 0.0
        for i in range(n):
            if span and np.linalg.norm(after[i] - before[i]) < 1e-3 * span:
                continue  # did not move visibly: an arrow would be a dot
            fig.add_annotation(x=after[i, 0], y=after[i, 1], ax=before[i, 0], ay=before[i, 1], xref="x", yref="y",
                               axref="x", ayref="y", showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.2,
                               arrowcolor=_colour(groups[i]), opacity=0.45 if groups[i] == "background" else 0.9,
                               text="")
    for i in highlight:
        fig.add_trace(go.Scatter(x=[after[i, 0]], y=[after[i, 1]], mode="markers", showlegend=False,
                                 hoverinfo="skip", marker=dict(size=22, symbol="circle-open",
                                                               line=dict(width=3, color="black"))))
    fig.update_layout(title=title or None, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      legend=dict(title="hollow = before, filled = after:", itemsizing="constant", orientation="h",
                                  yanchor="top", y=-0.02, xanchor="left", x=0),
                      hovermode="closest")
    fig.update_xaxes(showticklabels=False, zeroline=False, title=None)
    fig.update_yaxes(showticklabels=False, zeroline=False, title=None, scaleanchor="x", scaleratio=1)
    return fig


def delta_norm_figure(norms: Mapping[str, float], title: str = "Weight change per parameter") -> go.Figure:
    """Bar chart of the Frobenius norm of each edited parameter's change."""
    names = list(norms)
    fig = go.Figure(go.Bar(x=[norms[k] for k in names], y=names, orientation="h", marker_color="#0072B2",
                           hovertemplate="%{y}<br>||ΔW|| = %{x:.4g}<extra></extra>"))
    fig.update_layout(title=title, height=max(160, 60 + 28 * len(names)), margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="||ΔW|| (Frobenius)")
    fig.update_yaxes(autorange="reversed")
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
    fig.add_trace(go.Scatter(x=list(c_values), y=list(lambda_after), name="λ_max after", mode="lines+markers",
                             yaxis="y2", line=dict(color="black", dash="dot")))
    if lambda_before is not None:
        fig.add_hline(y=lambda_before, yref="y2", line=dict(color="grey", dash="dash"),
                      annotation_text="λ_max before", annotation_position="top left")
    fig.update_layout(title=title, height=420, xaxis=dict(title="C", range=[-0.02, 1.02]),
                      yaxis=dict(title="score", range=[0, 1.05]),
                      yaxis2=dict(title="λ_max after (log scale)", overlaying="y", side="right", type="log",
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


def figure_html(fig: go.Figure, title: str = "SSS Lab") -> str:
    """A standalone HTML page of ``fig`` titled ``title``, plotly.js inlined (opens offline)."""
    return html_page(fig, title, "inline")


# --- the Hypothesis view -----------------------------------------------------------------------------

HYPOTHESIS_X = {"lambda_max_before": "λ_max before the edit (log scale; ‖∇_h J‖², J in nats)",
                "knn_distance": "kNN distance of the edit prompt (mean euclidean distance to its k nearest "
                                "world prompts, hidden-state units)"}
DAMAGE_TITLE = "damage = 1 − locality (share of neighbour tokens changed)"
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
            fig.update_xaxes(title_text=HYPOTHESIS_X[x] if i == len(editors) else None,
                             type="log" if x == "lambda_max_before" else None, row=i, col=j,
                             exponentformat="power")
            fig.update_yaxes(title_text=DAMAGE_TITLE if j == 1 else None, row=i, col=j)
    fig.update_layout(title=title, height=160 + 300 * max(1, len(editors)), margin=dict(l=10, r=10, t=70, b=10),
                      legend=dict(orientation="h", y=-0.08), clickmode="event+select", hovermode="closest")
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
