"""One edit as a standalone HTML page: a case study to share without a server (``sss-lab inspect``).

The page shows what the app's Edit view shows for one ``EditRun``: the projection of the
neighbourhood's sentence embeddings before and after the edit (one joint fit, ``projection.project``)
coloured by each sentence's lambda_max, with a colour bar naming the unit; the probe table with
the four sparsity fields; the edit prompt's lambda_max against the new and the old target; the
metrics and, when the editor records one, the optimisation trajectory. plotly.js is written into
the page once (about 4.6 MB), so it opens offline; the HTML comes from a jinja2 template with
autoescaping, the tables from pandas.

Example:
    >>> run = analyse_edit(lm, "ft-l+sss", {}, case, background_sentences())
    >>> write_inspect_page(run, Path("france-rome.html"))
"""

from __future__ import annotations

import math
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .analysis import GROUP_LABELS, EditRun
from .errors import RequestError
from .projection import METHOD_LABELS, Method, project
from .sparsity import EDIT_LAMBDA_LABELS, LAMBDA_UNIT

LAMBDA_FLOOR = 1e-12  # lambda_max below this is drawn at this value on the log colour scale
SYMBOLS = {"rewrite": "star", "paraphrase": "diamond", "background": "square"}  # other groups: circle

_TEMPLATE = jinja2.Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
 table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
 th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
 th { background: #f3f3f3; } td:nth-child(-n+2) { text-align: left; }
 .note { color: #555; font-size: 0.9em; max-width: 70em; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="note">Model <b>{{ model }}</b>, editor <b>{{ editor }}</b>{% if c is not none %}, C = {{ c }}{% endif %};
settings: {{ settings }}. Edit took {{ seconds }}.</p>
{% for w in warnings %}<p class="note">Warning: {{ w }}</p>{% endfor %}
<h2>Metrics</h2>
{{ metrics_table | safe }}
<h2>lambda_max of the edit prompt</h2>
<p class="note">lambda_max (paper Eq. 9) in {{ unit }}. Against the new target it is a function of that
target's NLL: an edit that makes the target likely lowers it whatever the SSS term does.</p>
{{ lambda_table | safe }}
<h2>The neighbourhood before and after the edit</h2>
<p class="note">{{ projection_note }}</p>
{{ projection | safe }}
<h2>Probes</h2>
<p class="note">{{ probe_note }}</p>
{{ probe_table | safe }}
{% if trajectory %}<h2>Optimisation per step</h2>
{{ trajectory | safe }}{% endif %}
</body>
</html>
""")


def _log_lambda(values: np.ndarray) -> np.ndarray:
    """log10 of lambda_max, floored at LAMBDA_FLOOR (NaN stays NaN)."""
    return np.log10(np.maximum(np.asarray(values, dtype=np.float64), LAMBDA_FLOOR))


def projection_figure(run: EditRun, method: Method = "pca") -> tuple[go.Figure, str]:
    """The sentences before (left) and after (right) the edit, one joint 2-D fit, coloured by lambda_max.

    Colour: log10 lambda_max against each sentence's top answer (before: unedited model; after:
    edited model, same answer) on one shared colour bar. Returns the figure and a note on the
    projection (method used, variance explained, why it differs from ``method``). Raises
    RequestError for a run without sparsity (analysed without embeddings).
    """
    if not run.sparsity:
        raise RequestError("this run was analysed without embeddings, so it has no sparsity to show; "
                           "run analyse_edit with with_embeddings=True")
    emb = run.embeddings[run.knn.pooling]
    proj = project(emb.before, emb.after, method)
    axes = ("PC1", "PC2") if proj.method == "pca" else (f"{METHOD_LABELS[proj.method]} 1",
                                                       f"{METHOD_LABELS[proj.method]} 2")
    if proj.explained_variance:
        axes = tuple(f"{a} ({100 * v:.0f}% of variance)" for a, v in zip(axes, proj.explained_variance))
    lam = {"before": np.array([s.lambda_max_before for s in run.sparsity]),
           "after": np.array([s.lambda_max_after for s in run.sparsity])}
    colour = {k: _log_lambda(v) for k, v in lam.items()}
    finite = np.concatenate([c[np.isfinite(c)] for c in colour.values()])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-8.0, 0.0)
    fig = make_subplots(1, 2, subplot_titles=("before the edit", "after the edit"), shared_xaxes=True,
                        shared_yaxes=True, horizontal_spacing=0.06)
    for col, (when, xy) in enumerate((("before", proj.before), ("after", proj.after)), start=1):
        text = [f"{s.sentence}<br>{GROUP_LABELS.get(s.group, s.group)}; answer {s.answer!r}"
                f"<br>lambda_max {when} {getattr(s, 'lambda_max_' + when):.3g}"
                f"<br>kNN distance {when} {getattr(s, 'knn_distance_' + when):.3g} ({run.knn.metric}, k={run.knn.k})"
                f"<br>P(answer) {getattr(s, 'p_answer_' + when):.3f}" for s in run.sparsity]
        fig.add_trace(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name=f"sentences {when}", text=text,
            hovertemplate="%{text}<extra></extra>", showlegend=False,
            marker=dict(size=[16 if s.group == "rewrite" else 8 if s.group == "background" else 10 for s in run.sparsity],
                        symbol=[SYMBOLS.get(s.group, "circle") for s in run.sparsity],
                        color=colour[when], coloraxis="coloraxis", line=dict(width=1, color="#333"))),
            row=1, col=col)
        fig.update_xaxes(title_text=axes[0], row=1, col=col)
    fig.update_yaxes(title_text=axes[1], row=1, col=1)
    fig.update_layout(height=560, margin=dict(t=60, l=60, r=20, b=60),
                      coloraxis=dict(colorscale="Viridis", cmin=lo, cmax=hi,
                                     colorbar=dict(title=dict(text=f"log10 lambda_max<br>({LAMBDA_UNIT})"))))
    note = (f"{METHOD_LABELS[proj.method]} fitted once over the {len(run.sparsity)} sentences before and after "
            f"({run.knn.pooling}-token embeddings), so both panels share axes. Colour: log10 of each sentence's "
            "lambda_max against the unedited model's top answer (star: the edit prompt; diamonds: paraphrases; "
            "squares: background facts; circles: the other probes). Hover a point for its kNN distance in the full space.")
    if proj.message:
        note += " " + proj.message + "."
    return fig, note


def _trajectory_figure(run: EditRun) -> go.Figure | None:
    """Edit loss and SSS term per optimisation step (log scale), or None when the editor records none."""
    if not run.trajectory:
        return None
    steps = [t["step"] for t in run.trajectory]
    fig = go.Figure()
    for key, label in (("loss", "edit loss L (target NLL, nats)"), ("sss", "SSS term (lambda_max of the edit)")):
        values = [t.get(key, math.nan) for t in run.trajectory]
        if any(np.isfinite(values)):
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=label))
    fig.update_layout(height=320, xaxis_title="step", yaxis_title="value (log scale)", yaxis_type="log",
                      margin=dict(t=30, l=60, r=20, b=50))
    return fig


def _table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table (text escaped; numbers with 4 significant digits, NaN as "n/a")."""
    return frame.to_html(index=False, escape=True, na_rep="n/a", float_format=lambda v: f"{v:.4g}", border=0)


def probe_frame(run: EditRun) -> pd.DataFrame:
    """One row per probe: group, prompt, answers, P(old)/P(new) before/after, top-1, the four sparsity fields."""
    rows = []
    for r in run.rows:
        s = run.sparsity_of(r.prompt)
        rows.append({"group": GROUP_LABELS.get(r.group, r.group), "prompt": r.prompt, "old answer": r.old or "n/a",
                     "new answer": r.new, "P(old) before": r.p_old_before, "P(old) after": r.p_old_after,
                     "P(new) before": r.p_new_before, "P(new) after": r.p_new_after,
                     "top-1 before → after": f"{r.top1_before!r} → {r.top1_after!r}", "score": r.score,
                     **({"lambda_max before": s.lambda_max_before, "lambda_max after": s.lambda_max_after,
                         "kNN distance before": s.knn_distance_before, "kNN distance after": s.knn_distance_after}
                        if s is not None else {})})
    return pd.DataFrame(rows)


def inspect_page(run: EditRun, method: Method = "pca") -> str:
    """The standalone HTML page of ``run`` (see the module docstring); plotly.js inside, no CDN.

    Raises RequestError for a run analysed without embeddings.
    """
    req = run.case.request
    fig, note = projection_figure(run, method)
    metrics = pd.DataFrame([{"metric": k, "value": v} for k, v in run.result.metrics.items()])
    lam = run.edit_lambda
    lam_rows = []
    if lam is not None:
        lam_rows = [{"what": EDIT_LAMBDA_LABELS[k].replace("lambda_max ", "", 1), "target": t, "lambda_max": v}
                    for k, t, v in (("new_before", lam.new_target, lam.new_before),
                                    ("new_after", lam.new_target, lam.new_after),
                                    ("old_before", lam.old_target, lam.old_before),
                                    ("old_after", lam.old_target, lam.old_after))]
    trajectory = _trajectory_figure(run)
    seconds = f"{run.seconds_edit:.2f} s" if math.isfinite(run.seconds_edit) else "n/a"
    return _TEMPLATE.render(
        title=f"{req.prompt} → {req.target_new} ({run.editor})", model=run.model_name, editor=run.editor,
        c=run.c, settings=", ".join(f"{k}={v}" for k, v in run.config.items()), seconds=seconds,
        warnings=run.warnings, unit=LAMBDA_UNIT, metrics_table=_table(metrics),
        lambda_table=_table(pd.DataFrame(lam_rows)), projection_note=note,
        projection=fig.to_html(full_html=False, include_plotlyjs=True, div_id="projection"),
        probe_note=(f"lambda_max against each probe's top answer before the edit (the same answer after it), in "
                    f"{LAMBDA_UNIT}; kNN distance: mean {run.knn.metric} distance to the {run.knn.k} nearest other "
                    f"sentences of this page ({run.knn.pooling}-token embeddings, full space), among the "
                    "before-embeddings before and the after-embeddings after."),
        probe_table=_table(probe_frame(run)),
        trajectory=trajectory.to_html(full_html=False, include_plotlyjs=False, div_id="trajectory")
        if trajectory is not None else None)


def write_inspect_page(run: EditRun, path: Path, method: Method = "pca") -> Path:
    """Write ``inspect_page(run, method)`` to ``path`` (UTF-8; parent folders made); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(inspect_page(run, method), encoding="utf-8")
    return path
