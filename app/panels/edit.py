"""The Edit view's result panels: the metric cards, the probe table, the weight delta and the exports
(JSON, CSV, standalone HTML) of one run.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd
import streamlit as st

from app import figures, state
from app.panels.common import (LAMBDA_FORMAT, edit_took, file_stem, fmt_lambda, fmt_number, is_missing, run_label,
                               run_notices, show_frame)
from sss_core import analysis
from sss_core.jsonio import to_json

def metrics_row(run: analysis.EditRun) -> None:
    """lambda_max before and after the edit and the four EasyEdit metrics as cards; the run's warnings.

    The change of lambda_max is shown as a plain number without an arrow, and not at all when the
    edit did not take: a drop in lambda_max then says nothing about a successful sparse edit.
    """
    res = run.result
    cols = st.columns([1.35, 1.35, 1, 1, 1, 1])  # the λ_max labels whole, beside their help icon, at 1440 px
    lb, la = res.lambda_max_before, res.lambda_max_after
    cols[0].metric(LAMBDA_NEW_BEFORE, fmt_lambda(lb), help=LAMBDA_NEW_HELP)
    took = edit_took(run)
    delta = None if is_missing(la) or is_missing(lb) or not took else format(la - lb, "+" + LAMBDA_FORMAT)
    cols[1].metric(LAMBDA_NEW_AFTER, fmt_lambda(la), delta=delta, delta_color="off", delta_arrow="off",
                   help=None if took else "no change shown: the edit did not take")
    for col, name in zip(cols[2:], ("reliability", "generality", "locality", "portability")):
        col.metric(name, fmt_number(res.metrics.get(name, math.nan), ".2f"), help=METRIC_HELP[name])
    st.caption(lambda_caption(run))
    run_notices(run)


LAMBDA_NEW_BEFORE = "λ_max before (new target)"
LAMBDA_NEW_AFTER = "λ_max after (new target)"
LAMBDA_NEW_HELP = ("SSS metric (paper Eq. 9) of the edit prompt against the new target: the mean over tokens of the "
                   "squared gradient of the target's NLL at each token's last hidden state (small = sparse)")
P_HELP = "P(·) is the probability of the whole answer given the prompt (teacher forced)"
METRIC_HELP = {  # one line each, as the About page says it at length (paper Eqs. 1-3; EasyEdit's scoring)
    "reliability": "Does the edited model give the new answer for the edit prompt itself? Share of the answer's "
                   "tokens predicted top-1, teacher forced (paper Eq. 1)",
    "generality": "Does it give the new answer for paraphrases of the edit prompt it was not trained on? Scored as "
                  "reliability (paper Eq. 2)",
    "locality": "Do unrelated prompts keep the top-1 predictions the unedited model gave them? 1 = no neighbour "
                "damaged (paper Eq. 3)",
    "portability": "Does the edit carry over to what it implies: the subject under another name, the reversed "
                   "relation, one-hop questions?",
}


def lambda_caption(run: analysis.EditRun) -> str:
    """One line under the metric cards: lambda_max against the old target too, and what a drop means.

    Against the new target, lambda_max is a function of that target's NLL (``sss_core.sparsity``): every
    edit that makes the target likely drives it down, plain FT-L as much as FT-L+SSS. The caption says
    so, so that a drop is not read as the SSS term's doing.
    """
    el = run.edit_lambda
    old = ""
    if el is not None and el.old_target is not None and not is_missing(el.old_before):
        old = (f"Against the old target {el.old_target!r} (the whole answer): {fmt_lambda(el.old_before)} before, "
               f"{fmt_lambda(el.old_after)} after. ")
    return (old + "λ_max against the new target falls whenever an edit makes that target likely, with or "
            "without the SSS term (it is mostly the target's confidence); what the SSS term adds shows in "
            "Compare (same edit with C = 0) and in the Hypothesis view.")


def update_norm_warnings(weights: dict[str, float], steps) -> list[str]:
    """One warning naming the edits of a sequential history whose update outgrows the weight it changes.

    ``weights``: parameter -> Frobenius norm of the unedited weight; ``steps``: SequentialSteps.
    An update larger than the weight itself rewrites the layer rather than adding a fact to it; ROME
    does this under sequential edits with its defaults (docs/editors.md, "ROME under sequential edits").
    """
    over = []  # (edit number, editor, parameter, update norm, weight norm)
    for s in steps:
        for name, norm in (s.edit.delta_norms() or {}).items():
            w = weights.get(name)
            if w and norm > w:
                over.append((s.n, s.editor, name, norm, w))
    if not over:
        return []
    worst = max(over, key=lambda o: o[3] / o[4])
    edits = ", ".join(f"{n} ({e})" for n, e in dict.fromkeys((o[0], o[1]) for o in over))
    return [f"Updates larger than the weight they change, at edit(s) {edits}: the largest, edit {worst[0]}'s "
            f"update of {worst[2]}, has norm {worst[3]:.3g} against the weight's own {worst[4]:.3g} "
            f"({worst[3] / worst[4]:.1f}x). Updates this large overwrite what the layer knew: expect locality and "
            "unedited facts to collapse as edits accumulate (docs/editors.md, ROME under sequential edits)."]


def probe_frame(run: analysis.EditRun) -> pd.DataFrame:
    """The probability table as a DataFrame (what the Edit page shows and the CSV export holds;
    ``figures.probe_frame``, the same table as the inspect page's)."""
    return figures.probe_frame(run, analysis.GROUP_LABELS)


PROBE_WIDTHS = {"group": 128, "top-1": 128, "prompt": 170}  # pixels; the other columns are "small" (75 px)


def salience_html(when: str, tl) -> str:
    """One salience strip as HTML: ``tl`` (``sss_core.sss.TokenLambda``) token by token, each shaded by its
    share of sum_i ||dJ/dh_i||^2 (the same shading as the inspect page: opacity = share), the target's tokens
    underlined; each span carries its share (``data-share``) and says it with its value on hover."""
    spans = []
    for i, (text, share, value) in enumerate(zip(tl.tokens, tl.shares(), tl.per_token)):
        underline = "text-decoration: underline;" if i >= tl.n_prompt else ""
        spans.append(f'<span class="sss-tok" data-share="{share:.4f}" title="{share:.1%} of the sum; '
                     f'||dJ/dh||² = {value:.3g}" style="white-space: pre; padding: 0 1px; {underline} '
                     f'background: rgba(214, 39, 40, {min(1.0, share):.3f})">{html.escape(text)}</span>')
    return (f'<div class="sss-strip" data-when="{when}" style="font-family: monospace; margin: 0.2em 0">'
            f'<span style="display: inline-block; width: 15em">{when} (λ_max {fmt_lambda(tl.lambda_max)})</span>'
            + "".join(spans) + "</div>")


def salience_panel(run: analysis.EditRun) -> None:
    """Each token's share of the edit prompt's λ_max against the new target, before and after the edit (the
    run's ``token_lambda``); nothing for a run without it."""
    if run.token_lambda is None:
        return
    with st.container(key="edit-salience"):
        st.markdown("**Each token's share of λ_max (against the new target)**")
        st.html("".join(salience_html(when, tl) for when, tl in zip(("before", "after"), run.token_lambda)))
        st.caption("λ_max is the mean over the tokens fed (prompt, then the underlined target) of the squared "
                   "gradient norm of the target's NLL at each token's last hidden state; each token is shaded by "
                   "its share of that sum (hover for the share and the value). At the last hidden states a "
                   "token's gradient comes only from the prediction made at that token, so the share sits on the "
                   "positions that predict the target.")


def probe_table(run: analysis.EditRun, key: str = "probes", compact: bool = False) -> pd.DataFrame:
    """Draw the probability table (see probe_frame, probe_display) with its caption; returns the full
    DataFrame (what the CSV export holds).

    ``compact`` (half-width columns, Compare) keeps only ``figures.COMPACT_COLUMNS`` (``figures.probe_compact``).
    """
    df = probe_frame(run)
    shown = figures.probe_compact(df) if compact else figures.probe_display(df)
    formats = {c: ".3f" for c in shown.columns if c.startswith("P(")}
    formats["score"] = ".2f"
    small = {c: st.column_config.Column(c, width="small") for c in shown.columns if c not in ("prompt",)}
    show_frame(shown, key=f"{key}-{run.run_id}", formats=formats, column_config={
        **small,
        # group and top-1 wide enough for "distract-neighbour" and "FLIPPED off target" (PROBE_WIDTHS)
        "group": st.column_config.TextColumn("group", width=PROBE_WIDTHS["group"]),
        "top-1": st.column_config.TextColumn("top-1", width=PROBE_WIDTHS["top-1"],
                                             help=figures.TOP1_BADGE_HELP),
        "score": st.column_config.Column("score", width="small",
                                         help="EasyEdit metric: accuracy, or agreement for locality"),
        "prompt": st.column_config.TextColumn("prompt", width=PROBE_WIDTHS["prompt"])})
    st.caption(f"{P_HELP}. "
               "Top-1 is the most likely next token. ✓: a flip to the new target on a probe the edit should move "
               "(edit prompt, paraphrases, aliases); off target: such a probe flipped to another token; ✗: a flip "
               "that damages knowledge the edit should leave alone. Every column, "
               "ΔP(new) included, is in the probe table CSV.")
    return df


def delta_panel(run: analysis.EditRun):
    """The weight delta per parameter (Frobenius norm) as a bar chart; returns the figure, or None (no delta)."""
    if run.delta_norms:
        fig = figures.delta_norm_figure(run.delta_norms)
        st.plotly_chart(fig, key=f"delta-{run.run_id}", width="stretch")
        return fig
    st.info(f"{run.editor} does not change the model's weights (it keeps the edit outside them), so there "
            "is no weight delta to show.")
    return None


def embeddings_csv(run: analysis.EditRun, projections: dict) -> str:
    """Sentences, groups, distance moved and every projection computed so far, as CSV."""
    emb = next(iter(run.embeddings.values()))
    df = pd.DataFrame({"sentence": emb.sentences, "group": emb.groups, "top1_before": emb.top1_before,
                       "top1_after": emb.top1_after, "moved_full_space": emb.moved})
    for (rid, method, pooling), proj in projections.items():
        if rid == run.run_id:
            for j, axis in enumerate("xy"):
                df[f"{method}_{pooling}_{axis}_before"] = proj.before[:, j]
                df[f"{method}_{pooling}_{axis}_after"] = proj.after[:, j]
    return df.to_csv(index=False)


def run_json(run: analysis.EditRun) -> str:
    """The "Config + results (JSON)" export: strict JSON (NaN and Infinity as null, ``sss_core.jsonio``);
    the model is named by ``LoadedModel.name``, never by a path of the server. With the run's per-token
    λ_max (``lambda_max_tokens``: before and after, as ``edit --json`` writes it)."""
    return to_json(run.to_json_dict(), indent=True)


def export_buttons(run: analysis.EditRun, figs: dict[str, Any], key: str = "export") -> None:
    """Download the run's config and results (JSON), tables (CSV) and figures (standalone HTML)."""
    stem = file_stem(run)
    projections = dict(state.projection_cache())  # the callables below run outside the script thread
    cols = st.columns(3 + len(figs))
    cols[0].download_button("Config + results (JSON)", lambda: run_json(run),
                            f"{stem}.json", "application/json", key=f"{key}-json-{run.run_id}", on_click="ignore")
    cols[1].download_button("Probe table (CSV)", lambda: probe_frame(run).to_csv(index=False), f"{stem}-probes.csv",
                            "text/csv", key=f"{key}-csv-{run.run_id}", on_click="ignore")
    cols[2].download_button("Embeddings (CSV)", lambda: embeddings_csv(run, projections) if run.embeddings else "",
                            f"{stem}-embeddings.csv", "text/csv", key=f"{key}-emb-{run.run_id}", on_click="ignore",
                            disabled=not run.embeddings)
    for col, (name, fig) in zip(cols[3:], figs.items()):
        if fig is not None:
            r = run.case.request
            title = f"SSS Lab: {name.lower()}, {run_label(run)}, {r.prompt!r} -> {r.target_new!r}"
            col.download_button(f"{name} (HTML)", lambda fig=fig, title=title: figures.figure_html(fig, title, [run]),
                                f"{stem}-{name.lower().replace(' ', '-')}.html", "text/html",
                                key=f"{key}-html-{name}-{run.run_id}", on_click="ignore")


def world_panel(run) -> None:
    """World locality of a run measured with it (``EditRun.world``): the share of the other world facts whose
    top answer did not change, beside the sampled locality, and the damaged facts by relation and by name."""
    w = getattr(run, "world", None)
    if w is None:
        return
    sampled = run.result.metrics.get("locality", math.nan)
    st.markdown(f"**World locality {w.world_locality:.3f}**: {w.n_damaged} of the {len(w.others)} other facts of the "
                f"world changed their top answer (sampled locality of this edit's neighbour probes: "
                f"{fmt_number(sampled, '.3f')}).")
    if w.n_damaged:
        with st.expander(f"The {w.n_damaged} damaged facts, by relation"):
            by_relation = {k: v for k, v in w.by("relation").items() if v[0]}
            st.markdown("; ".join(f"{rel}: {d} of {t}" for rel, (d, t) in sorted(by_relation.items(),
                                                                                key=lambda kv: -kv[1][0])))
            show_frame(pd.DataFrame([f.as_dict() for f in w.damaged]), key=f"world-{run.run_id}")
