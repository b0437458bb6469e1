"""One edit as a standalone HTML page: a case study to share without a server (``sss-lab inspect``).

The page shows what the app's Edit view shows for one ``EditRun``, drawn by the same functions
(``sss_core.figures``): the projection of the neighbourhood's sentence embeddings before and after
the edit (one joint fit, ``projection.project``), arrows from before to after, coloured by each
sentence's lambda_max with a colour bar naming the unit; the probe table with the four sparsity
fields; the edit prompt's lambda_max against the new and the old target; the metrics and, when
the editor records one, the optimisation trajectory. plotly.js is written into
the page once (about 4.6 MB), so it opens offline; the HTML comes from a jinja2 template with
autoescaping, the tables from pandas.

Example:
    >>> run = analyse_edit(lm, "ft-l+sss", {}, case, background_sentences())
    >>> write_inspect_page(run, Path("france-rome.html"))
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import jinja2
import pandas as pd
import plotly.graph_objects as go

from .analysis import GROUP_LABELS, EditRun
from .errors import RequestError
from .figures import lambda_colouring, probe_display, trajectory_figure, trajectory_steps
from .figures import probe_frame as run_probe_frame
from .figures import projection_figure as draw_projection
from .projection import METHOD_LABELS, Method, project
from .sparsity import EDIT_LAMBDA_LABELS, LAMBDA_UNIT
from .sss import TokenLambda

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
 .strip { font-family: monospace; margin: 0.3em 0; } .strip .when { display: inline-block; width: 16em; }
 .tok { padding: 0 1px; white-space: pre; } .tok.target { text-decoration: underline; }
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
{% if token_strips %}
<h3>Each token's share of lambda_max (against the new target)</h3>
<p class="note">lambda_max is the mean over the m tokens fed (prompt, then target) of the squared gradient norm of
the target's NLL at each token's last hidden state; each token below is shaded by its share of that sum (hover
for the value). At the last hidden states a token's gradient comes only from the prediction made at that token,
so the share sits on the positions that predict the target; lower layers spread it (<code>sss-lab lambda --layer
all</code>). The target's tokens are underlined.</p>
{% for strip in token_strips %}
<div class="strip" data-when="{{ strip.when }}"><span class="when">{{ strip.when }} (lambda_max {{ strip.value }})</span>
{% for t in strip.tokens %}<span class="tok{% if t.target %} target{% endif %}" data-share="{{ t.share }}"
style="background: rgba(214, 39, 40, {{ t.alpha }})" title="{{ t.title }}">{{ t.text }}</span>{% endfor %}</div>
{% endfor %}
{% endif %}
<h2>The neighbourhood before and after the edit</h2>
<p class="note">{{ projection_note }}</p>
{{ projection | safe }}
<h2>Probes</h2>
<p class="note">{{ probe_note }}</p>
{{ probe_table | safe }}
{% if trajectory %}<h2>Optimisation per step</h2>
{{ trajectory | safe }}{% endif %}
{{ record | safe }}
</body>
</html>
""")


def _hover(run: EditRun) -> list[str]:
    """Hover text per sentence: the sentence, its group and answer, and its lambda_max, kNN distance and
    P(answer) before and after the edit."""
    knn = f"({run.knn.metric}, k={run.knn.k})"
    return [f"{html.escape(s.sentence)}<br>{GROUP_LABELS.get(s.group, s.group)}; answer {html.escape(repr(s.answer))}"
            f"<br>lambda_max before {s.lambda_max_before:.3g}, after {s.lambda_max_after:.3g}"
            f"<br>kNN distance before {s.knn_distance_before:.3g}, after {s.knn_distance_after:.3g} {knn}"
            f"<br>P(answer) before {s.p_answer_before:.3f}, after {s.p_answer_after:.3f}" for s in run.sparsity]


def projection_figure(run: EditRun, method: Method = "pca") -> tuple[go.Figure, str]:
    """The sentences before (hollow) and after (filled) the edit, one joint 2-D fit, an arrow from each
    before to its after, coloured by lambda_max: the app's projection (``figures.projection_figure``).

    Colour: log10 lambda_max against each sentence's top answer (before: unedited model; after:
    edited model, same answer) on one colour bar. Returns the figure and a note on the projection
    (method used, variance explained, why it differs from ``method``). Raises RequestError for a run
    without sparsity (analysed without embeddings).
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
    colour = lambda_colouring(run.sparsity, f"log10 lambda_max<br>({LAMBDA_UNIT})", name="lambda_max")
    fig = draw_projection(proj.before, proj.after, [s.group for s in run.sparsity], _hover(run),
                          labels=GROUP_LABELS, colour=colour, axis_titles=axes)
    note = (f"{METHOD_LABELS[proj.method]} fitted once over the {len(run.sparsity)} sentences before and after "
            f"({run.knn.pooling}-token embeddings). Hollow: before the edit; filled: after; arrows go from before "
            "to after. Colour: log10 of each sentence's lambda_max against the unedited model's top answer "
            "(diamond: the edit prompt; grey: no value). Hover a point for its kNN distance in the full space.")
    if proj.message:
        note += " " + proj.message + "."
    return fig, note


def _trajectory_figure(run: EditRun) -> go.Figure | None:
    """Edit loss and SSS term per optimisation step (``figures.trajectory_figure``, as on the app's
    Compare view), or None when the editor records none."""
    if not run.trajectory:
        return None
    return trajectory_figure({run.editor: trajectory_steps(run.trajectory)})


def _table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table (text escaped; numbers with 4 significant digits, NaN as "n/a")."""
    return frame.to_html(index=False, escape=True, na_rep="n/a", float_format=lambda v: f"{v:.4g}", border=0)


def probe_frame(run: EditRun) -> pd.DataFrame:
    """The app's probe table (``figures.probe_frame``, shown as ``figures.probe_display``) with the four
    sparsity fields of each probe: group, prompt, top-1 before → after, answers, P(old)/P(new)
    before/after, score, lambda_max and kNN distance before/after."""
    return probe_display(run_probe_frame(run, GROUP_LABELS, sparsity=True))


def _strip(when: str, tl: TokenLambda) -> dict:
    """One salience strip of the page: each token's text, share of lambda_max (rounded) and shade."""
    tokens = [{"text": text, "share": f"{share:.4f}", "alpha": f"{min(1.0, share):.3f}", "target": i >= tl.n_prompt,
               "title": f"{share:.1%} of the sum; ||dJ/dh||^2 = {value:.3g}"}
              for i, (text, share, value) in enumerate(zip(tl.tokens, tl.shares(), tl.per_token))]
    return {"when": when, "value": f"{tl.lambda_max:.4g}", "tokens": tokens}


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
    strips = [] if run.token_lambda is None else [_strip(when, t) for when, t in zip(("before", "after"), run.token_lambda)]
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
        token_strips=strips,
        trajectory=trajectory.to_html(full_html=False, include_plotlyjs=False, div_id="trajectory")
        if trajectory is not None else None, record=run.record.to_html() if run.record is not None else "")


def write_inspect_page(run: EditRun, path: Path, method: Method = "pca") -> Path:
    """Write ``inspect_page(run, method)`` to ``path`` (UTF-8; parent folders made); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(inspect_page(run, method), encoding="utf-8")
    return path
