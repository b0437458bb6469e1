"""Streamlit building blocks shared by several views: pickers, result panels, export buttons.

Views stay thin: they arrange these panels. Every panel reads and writes session state only through
app.state, and draws figures only from app.figures.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import io
import json
import logging
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import pandas as pd
import streamlit as st

from app import analysis, figures, resources, state
from app.uploads import parse_upload
from sss_core.editors import EDITORS, editor_config
from sss_core.errors import SSSError
from sss_core.evaluation.presets import case_for_request
from sss_core.models import LoadedModel
from sss_core.projection import METHOD_LABELS, METHODS, project
from sss_core.types import EditCase, EditRequest

log = logging.getLogger(__name__)
POOLING_LABELS = {"last": "last token", "mean": "mean of tokens"}


def show_error(exc: BaseException, what: str = "That did not work") -> None:
    """A message for the user, never a traceback. Unexpected errors are logged with their traceback."""
    if isinstance(exc, (SSSError, ValueError, KeyError, FileNotFoundError)):
        st.error(f"{what}: {exc}")
    else:
        log.exception("unexpected error in the app")
        st.error(f"{what}: unexpected {type(exc).__name__}: {exc}. The model was restored; details are in "
                 "the server log.")


# --- model and editor -----------------------------------------------------------------------------

def model_picker() -> LoadedModel | None:
    """Text box for the model; returns the loaded model or None (after showing why)."""
    state.setdefault(state.MODEL, state.DEFAULT_MODEL_NAME)
    name = st.text_input("Model", key=state.MODEL,
                         help="'default' is the shipped GPT-2 trained on the built-in fact world; or type a "
                              "local Hugging Face folder or a hub name (needs a network the first time)")
    try:
        lm = resources.get_model(name)
    except Exception as exc:  # noqa: BLE001 - any load failure is shown, the page stays usable
        show_error(exc, f"Could not load the model {name!r}")
        return None
    resources.prewarm(name)  # once per model; never raises
    return lm


def has_c(editor: str) -> bool:
    """Does this editor run with an SSS weight C (a ``sss_c`` setting that it uses)?"""
    spec = EDITORS[editor]
    return spec.uses_sss and analysis.SSS_FIELD in {f.name for f in dataclasses.fields(spec.config_cls)}


def _parse_literal(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("none", ""):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string such as a folder path


def config_widgets(editor: str) -> dict[str, Any]:
    """One widget per setting of the editor's config (C excepted); returns the changed values."""
    spec = EDITORS[editor]
    defaults = editor_config(editor)
    hints = typing.get_type_hints(spec.config_cls)
    overrides: dict[str, Any] = {}
    for f in dataclasses.fields(spec.config_cls):
        if f.name == analysis.SSS_FIELD:
            continue
        key, default = state.config_key(editor, f.name), getattr(defaults, f.name)
        tp, help_ = hints.get(f.name, type(default)), f.metadata.get("help")
        if tp is bool:
            state.setdefault(key, bool(default))
            value = st.checkbox(f.name, key=key, help=help_)
        elif tp is int:
            state.setdefault(key, int(default))
            value = int(st.number_input(f.name, key=key, step=1, help=help_))
        elif tp is float:
            state.setdefault(key, float(default))
            step = abs(float(default)) / 10 if default else 0.01
            value = float(st.number_input(f.name, key=key, step=step, format="%g", help=help_))
        elif get_origin(tp) is Literal:
            options = list(get_args(tp))
            state.setdefault(key, default)
            value = st.selectbox(f.name, options, key=key, help=help_)
        else:
            state.setdefault(key, "None" if default is None else str(default))
            value = _parse_literal(st.text_input(f.name, key=key, help=(help_ or "") + " (Python literal; None)"))
        if value != default:
            overrides[f.name] = value
    return overrides


def config_overrides_from_state(editor: str) -> dict[str, Any]:
    """The advanced settings chosen for ``editor`` on the Edit page, without drawing widgets."""
    defaults = editor_config(editor)
    out = {}
    for f in dataclasses.fields(EDITORS[editor].config_cls):
        key = state.config_key(editor, f.name)
        if f.name == analysis.SSS_FIELD or key not in st.session_state:
            continue
        value = st.session_state[key]
        if isinstance(value, str) and not isinstance(getattr(defaults, f.name), str):
            value = _parse_literal(value)
        if value != getattr(defaults, f.name):
            out[f.name] = value
    return out


@dataclass(frozen=True)
class EditorChoice:
    editor: str
    c: float | None  # None when the editor has no C
    overrides: dict[str, Any]


def editor_picker(editor_key: str = state.EDITOR, c_key: str = state.C, advanced: bool = True,
                  label: str = "Editor", only_with_c: bool = False, show_c: bool = True) -> EditorChoice:
    """Editor select box, C slider and (optionally) the advanced settings expander."""
    names = [n for n in EDITORS if has_c(n)] if only_with_c else list(EDITORS)
    default = "ft-l+sss" if "ft-l+sss" in names else names[0]
    if st.session_state.get(editor_key) not in names:
        st.session_state[editor_key] = default
    editor = st.selectbox(label, names, key=editor_key,
                          format_func=lambda n: f"{n} - {EDITORS[n].description}")
    uses_c = has_c(editor) and show_c
    state.setdefault(c_key, float(EDITORS[editor].defaults.get(analysis.SSS_FIELD, 0.9)))
    c = None
    if uses_c:
        c = st.slider("C (weight of the SSS term)", 0.0, 1.0, step=0.05, key=c_key,
                      help="L_all = (1 - C) * L_edit + C * SSS (paper Eq. 10). C = 0 is the editor without "
                           "SSS; C = 1 only minimises lambda_max and does not edit")
    elif show_c:
        st.caption(f"{editor} does not use SSS (C = 0); pick an editor ending in '+sss' to set C.")
    if advanced:
        with st.expander("Advanced: editor settings"):
            st.caption(f"The settings of {editor} ({EDITORS[editor].config_cls.__name__}); defaults as shipped.")
            overrides = config_widgets(editor)
    else:
        overrides = config_overrides_from_state(editor)
    if uses_c:
        overrides[analysis.SSS_FIELD] = float(c)
    return EditorChoice(editor, float(c) if uses_c else None, overrides)


# --- the request -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RequestChoice:
    """What the request picker holds; ``build`` turns it into an EditCase (or raises RequestError)."""

    source: str
    prompt: str
    subject: str | None
    target: str
    case: EditCase | None = None  # presets and uploads come as whole cases
    paraphrases: tuple[str, ...] = ()
    neighbours: tuple[str, ...] = ()

    def build(self, lm: LoadedModel) -> EditCase:
        if self.case is not None:
            return self.case
        request = EditRequest(self.prompt, self.target, subject=self.subject or None).validate()
        return case_for_request(request, self.paraphrases, self.neighbours, lm)

    def describe(self) -> str:
        return f"{self.prompt!r} -> {self.target!r}"


def _preset_label(case: EditCase) -> str:
    r = case.request
    was = f" (was {r.ground_truth})" if r.ground_truth else ""
    return f"{r.prompt} -> {r.target_new}{was}"


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in (text or "").splitlines() if line.strip())


def request_picker() -> RequestChoice:
    """World preset, typed fact, or a record from an uploaded EasyEdit JSON file."""
    state.setdefault(state.REQ_SOURCE, state.SOURCES[0])
    source = st.radio("Request", state.SOURCES, key=state.REQ_SOURCE, horizontal=True)
    if source == state.SOURCES[0]:
        cases = {c.request.case_id: c for c in resources.preset_cases()}
        if st.session_state.get(state.PRESET) not in cases:
            st.session_state[state.PRESET] = next(iter(cases))
        cid = st.selectbox("Fact from the built-in world (test split)", list(cases), key=state.PRESET,
                           format_func=lambda i: _preset_label(cases[i]))
        case = cases[cid]
        st.caption(f"{len(case.probes)} probes come with it: " + ", ".join(
            sorted({analysis.GROUP_LABELS.get(p.group, p.group) for p in case.probes})))
        r = case.request
        return RequestChoice(source, r.prompt, r.subject, r.target_new, case)
    if source == state.SOURCES[1]:
        state.setdefault(state.TYPED_PROMPT, "The capital of France is")
        state.setdefault(state.TYPED_SUBJECT, "France")
        state.setdefault(state.TYPED_TARGET, "Rome")
        c1, c2, c3 = st.columns([3, 1.3, 1.3])
        prompt = c1.text_input("Prompt", key=state.TYPED_PROMPT)
        subject = c2.text_input("Subject (as in the prompt)", key=state.TYPED_SUBJECT,
                                help="needed by ROME/MEMIT; leave empty otherwise")
        target = c3.text_input("New target", key=state.TYPED_TARGET)
        with st.expander("Paraphrases and neighbours (optional)"):
            st.caption("A world fact's prompt gets every probe group of the world automatically.")
            paras = st.text_area("Paraphrases, one per line (scored against the new target)",
                                 key=state.TYPED_PARAPHRASES)
            neigh = st.text_area("Neighbour prompts, one per line (should keep their answers)",
                                 key=state.TYPED_NEIGHBOURS)
        return RequestChoice(source, prompt.strip(), subject.strip() or None, target.strip(), None,
                             _lines(paras), _lines(neigh))
    upload = st.file_uploader("EasyEdit JSON (CounterFact, ZsRE, ROME's CounterFact, the world's records)",
                              type=["json", "jsonl"], key="upload_file")
    if upload is not None:
        held = state.uploaded_cases()
        if held is None or held[0] != f"{upload.name}:{upload.size}":
            try:
                state.set_uploaded_cases(f"{upload.name}:{upload.size}", parse_upload(upload.getvalue(), upload.name))
                st.session_state[state.UPLOAD_CHOICE] = 0
            except SSSError as exc:
                show_error(exc, f"Could not read {upload.name}")
                return RequestChoice(source, "", None, "")
    held = state.uploaded_cases()
    if held is None:
        st.info("Upload a file to pick a record from it.")
        return RequestChoice(source, "", None, "")
    cases = held[1]
    state.setdefault(state.UPLOAD_CHOICE, 0)
    if st.session_state[state.UPLOAD_CHOICE] >= len(cases):
        st.session_state[state.UPLOAD_CHOICE] = 0
    i = st.selectbox(f"Record ({len(cases)} in {held[0].rsplit(':', 1)[0]})", range(len(cases)),
                     key=state.UPLOAD_CHOICE, format_func=lambda j: f"{j}: {_preset_label(cases[j])}")
    case = cases[i]
    r = case.request
    return RequestChoice(source, r.prompt, r.subject, r.target_new, case)


def run_edit_with_status(lm: LoadedModel, choice: EditorChoice, request: RequestChoice,
                         with_background: bool = True) -> analysis.EditRun | None:
    """Run one edit inside st.status, showing each stage; errors become messages."""
    with st.status(f"Editing with {choice.editor}...", expanded=True) as status:
        try:
            case = request.build(lm)
            run = analysis.analyse_edit(lm, choice.editor, choice.overrides, case,
                                        resources.background_prompts() if with_background else (),
                                        progress=status.write)
        except Exception as exc:  # noqa: BLE001 - shown to the user; the model is already restored
            status.update(label="The edit failed", state="error", expanded=True)
            show_error(exc, "The edit failed")
            return None
        status.update(label=f"Done: edited in {run.seconds_edit:.2f}s, everything measured in "
                            f"{run.seconds_total:.2f}s", state="complete", expanded=False)
    return run


# --- results -----------------------------------------------------------------------------------------

def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def run_caption(run: analysis.EditRun) -> str:
    r = run.case.request
    c = f", C = {run.c:g}" if run.c is not None and EDITORS.get(run.editor) and has_c(run.editor) else ""
    return (f"**{run.editor}**{c} on `{run.model_name.rsplit('/', 1)[-1]}`: {r.prompt!r} -> **{r.target_new}** "
            f"(run `{run.run_id}`, {run.seconds_total:.1f} s)")


def metrics_row(run: analysis.EditRun) -> None:
    res = run.result
    cols = st.columns(6)
    lb, la = res.lambda_max_before, res.lambda_max_after
    cols[0].metric("λ_max before", _fmt(lb), help="SSS metric of the edit prompt and new target (paper Eq. 9)")
    cols[1].metric("λ_max after", _fmt(la), delta=None if math.isnan(la - lb) else f"{la - lb:+.3g}",
                   delta_color="off")
    for col, name in zip(cols[2:], ("reliability", "generality", "locality", "portability")):
        col.metric(name, _fmt(res.metrics.get(name, math.nan), ".2f"))
    for w in run.warnings:
        st.warning(w)


def _badge(row: analysis.ProbeRow) -> str:
    if not row.flipped:
        return "same"
    if row.wanted_flip is True:
        return "FLIPPED ✓"
    if row.wanted_flip is False:
        return "FLIPPED ✗ damage"
    return "FLIPPED"


def probe_frame(run: analysis.EditRun) -> pd.DataFrame:
    """The probability table as a DataFrame (what the Edit page shows and the CSV export holds)."""
    rows = []
    for r in run.rows:
        rows.append({"group": analysis.GROUP_LABELS.get(r.group, r.group), "prompt": r.prompt,
                     "top-1": _badge(r), "top-1 before": r.top1_before, "top-1 after": r.top1_after,
                     "old answer": r.old or "", "P(old) before": r.p_old_before, "P(old) after": r.p_old_after,
                     "new answer": r.new, "P(new) before": r.p_new_before, "P(new) after": r.p_new_after,
                     "ΔP(new)": r.p_new_after - r.p_new_before, "score": r.score})
    return pd.DataFrame(rows)


def probe_table(run: analysis.EditRun, key: str = "probes") -> pd.DataFrame:
    df = probe_frame(run)
    prob = {c: st.column_config.NumberColumn(c, format="%.3f") for c in df.columns if c.startswith("P(")}
    st.dataframe(df, hide_index=True, key=f"{key}-{run.run_id}", width="stretch", column_config={
        **prob, "ΔP(new)": st.column_config.NumberColumn("ΔP(new)", format="%+.3f"),
        "top-1": st.column_config.TextColumn("top-1", width="medium",
                                             help="same, or FLIPPED: ✓ wanted by the edit, ✗ damage"),
        "score": st.column_config.NumberColumn("score", format="%.2f",
                                               help="EasyEdit metric: accuracy, or agreement for locality"),
        "prompt": st.column_config.TextColumn("prompt", width="large")})
    st.caption("P(·) is the probability of the whole answer given the prompt (teacher forced). "
               "Top-1 is the most likely next token. ✓: a flip the edit wants (edit prompt, paraphrases, "
               "aliases); ✗: a flip that damages knowledge the edit should leave alone.")
    return df


def delta_panel(run: analysis.EditRun):
    if run.delta_norms:
        fig = figures.delta_norm_figure(run.delta_norms)
        st.plotly_chart(fig, key=f"delta-{run.run_id}", width="stretch")
        return fig
    st.info(f"{run.editor} does not change the model's weights (it keeps the edit outside them), so there "
            "is no weight delta to show.")
    return None


def _hover(emb: analysis.EmbeddingSet) -> list[str]:
    moved = emb.moved
    norm = [float((v.astype("float64") ** 2).sum() ** 0.5) for v in emb.before]
    return [f"{html.escape(s)}<br>group: {analysis.GROUP_LABELS.get(g, g)}"
            f"<br>top-1 before: {html.escape(tb)}<br>top-1 after: {html.escape(ta)}"
            f"<br>moved ‖Δh‖ = {m:.3g} ({m / n if n else 0:.1%} of ‖h‖, full space)"
            for s, g, tb, ta, m, n in zip(emb.sentences, emb.groups, emb.top1_before, emb.top1_after, moved, norm)]


def _selected(event, fig) -> list[int]:
    """Sentence indices of the points selected (clicked, box or lasso) in the projection."""
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        points = (event or {}).get("selection", {}).get("points", [])
    out = []
    for p in points or []:
        idx = p.get("customdata")
        if idx is None and "curve_number" in p:
            trace = fig.data[p["curve_number"]]
            data = trace.customdata
            idx = data[p.get("point_index", p.get("point_number", 0))] if data is not None else None
        if isinstance(idx, (list, tuple)):
            idx = idx[0] if idx else None
        if idx is not None and int(idx) not in out:
            out.append(int(idx))
    return out


def projection_panel(run: analysis.EditRun, key: str, height: int = 560):
    """Method choice, the joint projection with arrows, and nearest neighbours of a selected point."""
    if not run.embeddings:
        st.info("This run has no embeddings.")
        return None
    state.setdefault(state.PROJ_METHOD, "pca")
    poolings = list(run.embeddings)
    if st.session_state.get(state.PROJ_POOLING) not in poolings:
        st.session_state[state.PROJ_POOLING] = poolings[0]
    c1, c2 = st.columns(2)
    method = c1.radio("Projection", METHODS, key=state.PROJ_METHOD, horizontal=True,
                      format_func=lambda m: METHOD_LABELS[m],
                      help="One joint fit over the before and after points. PCA is deterministic and linear: "
                           "sentences the edit did not move stay put. UMAP/t-SNE show neighbourhoods but "
                           "distort distances.")
    pooling = c2.radio("Sentence embedding", poolings, key=state.PROJ_POOLING, horizontal=True,
                       format_func=lambda p: POOLING_LABELS.get(p, p),
                       help="The last hidden state (after the final norm) at the last token, or averaged "
                            "over the sentence's tokens")
    emb = run.embeddings[pooling]
    # Compile UMAP in the background once the first results are on screen (not earlier: the compile
    # holds the GIL and would slow the first edit); a UMAP asked for meanwhile waits for it.
    warm = resources.umap_warmup()
    if method == "umap" and not warm.done.is_set():
        with st.spinner("Compiling UMAP (once per server start, about 10-15 s)..."):
            warm.done.wait(timeout=120)
    cache = state.projection_cache()
    ck = (run.run_id, method, pooling)
    if ck not in cache:
        try:
            with st.spinner(f"Fitting {METHOD_LABELS[method]}..."):
                cache[ck] = project(emb.before, emb.after, method)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, f"{METHOD_LABELS[method]} failed")
            return None
    proj = cache[ck]
    if proj.message:
        st.info(proj.message)
    fig = figures.projection_figure(proj.before, proj.after, emb.groups, _hover(emb),
                                    labels=analysis.GROUP_LABELS, height=height)
    event = st.plotly_chart(fig, key=f"{key}-{run.run_id}-{method}-{pooling}", on_select="rerun",
                            selection_mode=("points", "box", "lasso"), width="stretch")
    variance = (f" The two PCA axes hold {sum(proj.explained_variance):.0%} of the variance."
                if proj.explained_variance else "")
    st.caption("Hollow: before the edit; filled: after; arrows go from before to after. 2-D distances are "
               "approximate (a projection of a " + f"{emb.before.shape[1]}-dimensional space);" +
               " the hover's ‖Δh‖ is measured in the full space." + variance +
               " Click a point, or lasso several, to list nearest neighbours before vs after.")
    selected = _selected(event, fig)
    if selected:
        if len(selected) > 1:
            pick = st.selectbox(f"{len(selected)} sentences selected; neighbours of", selected,
                                format_func=lambda i: emb.sentences[i], key=f"{key}-pick")
        else:
            pick = selected[0]
        st.markdown(f"**Nearest neighbours of** “{emb.sentences[pick]}” (full space, euclidean)")
        st.dataframe(pd.DataFrame(analysis.neighbour_table(emb, pick)), hide_index=True, width="stretch",
                     key=f"{key}-nn-{run.run_id}")
    return fig


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


def export_buttons(run: analysis.EditRun, figs: dict[str, Any], key: str = "export") -> None:
    """Download the run's config and results (JSON), tables (CSV) and figures (standalone HTML)."""
    stem = f"sss-{run.editor}-{run.run_id}"
    projections = dict(state.projection_cache())  # the callables below run outside the script thread
    cols = st.columns(3 + len(figs))
    cols[0].download_button("Config + results (JSON)", lambda: json.dumps(run.to_json_dict(), indent=2, default=str),
                            f"{stem}.json", "application/json", key=f"{key}-json-{run.run_id}", on_click="ignore")
    cols[1].download_button("Probe table (CSV)", lambda: probe_frame(run).to_csv(index=False), f"{stem}-probes.csv",
                            "text/csv", key=f"{key}-csv-{run.run_id}", on_click="ignore")
    cols[2].download_button("Embeddings (CSV)", lambda: embeddings_csv(run, projections) if run.embeddings else "",
                            f"{stem}-embeddings.csv", "text/csv", key=f"{key}-emb-{run.run_id}", on_click="ignore",
                            disabled=not run.embeddings)
    for col, (name, fig) in zip(cols[3:], figs.items()):
        if fig is not None:
            col.download_button(f"{name} (HTML)", lambda fig=fig: figures.figure_html(fig),
                                f"{stem}-{name.lower().replace(' ', '-')}.html", "text/html",
                                key=f"{key}-html-{name}-{run.run_id}", on_click="ignore")


def chart_with_table(fig, df: pd.DataFrame, stem: str, key: str, table_label: str = "Table") -> None:
    """A figure, the table behind it, and both as downloads: the table as CSV, the figure as HTML."""
    st.plotly_chart(fig, key=f"{key}-fig", width="stretch")
    st.dataframe(df, hide_index=True, width="stretch", key=f"{key}-table")
    c1, c2 = st.columns(2)
    with c1:
        frame_csv_button(df, f"{table_label} (CSV)", f"{stem}.csv", key=f"{key}-csv")
    c2.download_button("Figure (HTML)", lambda: figures.figure_html(fig), f"{stem}.html", "text/html",
                       key=f"{key}-html", on_click="ignore")


def frame_csv_button(df: pd.DataFrame, label: str, file_name: str, key: str) -> None:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    st.download_button(label, buf.getvalue(), file_name, "text/csv", key=key, on_click="ignore")
