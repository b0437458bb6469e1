"""What every view's panels share: missing values and number formats, a run's name and caption, its
notices, tables and CSV downloads, a figure with its table, and the cached projection fit.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, records, state
from app.messages import show_error
from sss_core import analysis
from sss_core.editors import EDITORS
from sss_core.projection import METHOD_LABELS, project

MISSING = figures.MISSING  # the one spelling of a missing value (no C, no probe of a group, NaN) on every view
LAMBDA_FORMAT = ".2e"  # lambda_max spans decades (1e-6 .. 1e1): scientific, 3 significant digits
STYLED_CELLS = 50_000  # tables up to this many cells get the app's number formats and MISSING
TOOK = 1.0  # reliability below this: the edit did not take (the model does not give the new answer)


def is_missing(x: Any) -> bool:
    """None or NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_number(x: float | None, spec: str = ".3g") -> str:
    """A number for a metric card; ``MISSING`` for None or NaN."""
    return MISSING if is_missing(x) else format(x, spec)


def fmt_lambda(x: float | None) -> str:
    """lambda_max as shown everywhere in the app: 3 significant digits, scientific (8.34e-06)."""
    return fmt_number(x, LAMBDA_FORMAT)


def shown_c(editor: str, c: float | None) -> float | None:
    """C as shown for a run of ``editor``: None for an editor without an SSS term (registry: no C
    field, or SSS not used), so "ft-l C=0" is never shown."""
    spec = EDITORS.get(editor)
    return c if c is not None and spec is not None and spec.has_c else None


def run_label(run: analysis.EditRun, prefix: str = "") -> str:
    """A short name of a run: "A: ft-l+sss C=0.9", or "A: ft-l" for an editor without C."""
    c = shown_c(run.editor, run.c)
    return f"{prefix}{run.editor}" + (f" C={c:g}" if c is not None else "")


def run_caption(run: analysis.EditRun) -> str:
    """One line of Markdown naming the editor (and its C where it uses SSS), the model and the request, the run's
    id (this session's) and its record's digest (the same for every replay of the same record, in any session)."""
    r = run.case.request
    c = shown_c(run.editor, run.c)
    c = f", C = {c:g}" if c is not None else ""
    record = f", record `{run.record.digest()}`" if run.record is not None else ""
    return (f"**{run.editor}**{c} on `{run.model_name.rsplit('/', 1)[-1]}`: {r.prompt!r} -> **{r.target_new}** "
            f"(run `{run.run_id}`{record}, {run.seconds_total:.1f} s){records.caption_settings(run.record)}")


def file_stem(run: analysis.EditRun) -> str:
    """The start of a run's download names: editor and record digest (the same for every replay of the record:
    a file matches its link), or the run id for a run without a record."""
    return f"sss-{run.editor}-{run.record.digest() if run.record is not None else run.run_id}"


def edit_took(run: analysis.EditRun) -> bool:
    """Whether the edit took: reliability (the edit prompt gives the new target) is 1; NaN counts as not."""
    rel = run.result.metrics.get("reliability", math.nan)
    return not is_missing(rel) and rel >= TOOK


def run_flags(run: analysis.EditRun) -> list[str]:
    """Warnings about the run's outcome itself (the request's own warnings are in ``run.warnings``)."""
    if edit_took(run):
        return []
    rel = run.result.metrics.get("reliability", math.nan)
    return [f"The edit did not take: reliability {fmt_number(rel, '.2f')} (the edited model does not give "
            f"{run.case.request.target_new!r} for the edit prompt). Its other metrics and λ_max describe a "
            "model that was not edited as asked; try more steps, another layer or another editor."]


def run_notices(run: analysis.EditRun) -> None:
    """The run's outcome flags and the request's warnings, each as a warning box."""
    for w in (*run_flags(run), *run.warnings):
        st.warning(w)


def earlier_run_notice(view: str, run, described: str | None = None) -> None:
    """Mark results on screen that are not those of the last attempt: it failed, or the inputs changed.

    ``described``: the inputs the results came from, when they differ from the form's (None if equal).
    """
    failed = state.failed_attempt(view)
    if failed is not None and run is not None:
        st.warning(f"Earlier run: the results below are from before your last attempt, which failed "
                   f"({failed}).", icon=":material/history:")
    elif described is not None:
        st.info(f"Earlier run: the results below are for {described}; the inputs above have changed "
                "since. Run again to update them.", icon=":material/history:")


def cached_projection(cache: dict, key, before: np.ndarray, after: np.ndarray, method: str, what: str = "",
                      **params):
    """The projection of ``before``/``after`` (each (n, d_model)) by ``method`` with ``params`` (UMAP's
    n_neighbors and min_dist, t-SNE's perplexity; ``projection.project``), fitted once per ``key`` in ``cache``
    and again when the parameters asked for change; its notice shown. None (the error shown) when the fit fails."""
    asked = {k: v for k, v in params.items() if v is not None}
    if key not in cache or {k: v for k, v in cache[key].asked.items() if v is not None} != asked:
        try:
            with st.spinner(f"Fitting {METHOD_LABELS[method]}{what}..."):
                cache[key] = project(before, after, method, **params)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, f"{METHOD_LABELS[method]} failed")
            return None
    proj = cache[key]
    if proj.message:
        st.info(proj.message)
    return proj


def signed_zero_free(value, spec: str) -> str:
    """``format(value, spec)``, but a value that rounds to zero is written as zero itself: "+0.0000", never
    "-0.0000" (a change of -3e-7 shown to four decimals is no change at that precision)."""
    text = format(value, spec)
    try:
        zero = format(0.0, spec)
    except (TypeError, ValueError):
        return text
    return zero if text.lstrip("+-−") == zero.lstrip("+-−") else text


def show_frame(df: pd.DataFrame, key: str, formats: dict[str, str] | None = None,
               column_config: dict | None = None) -> None:
    """``st.dataframe`` with missing values as ``MISSING`` and lambda_max columns scientific.

    ``formats``: column -> format spec (".3f"); columns named like "λ_max ..." or "lambda_max..."
    get ``LAMBDA_FORMAT`` unless given.
    """
    specs = {c: LAMBDA_FORMAT for c in df.columns if "λ_max" in str(c) or "lambda_max" in str(c)}
    specs.update({c: f for c, f in (formats or {}).items() if c in df.columns})

    def formatter(spec: str):
        return lambda v: MISSING if is_missing(v) else signed_zero_free(v, spec)

    # in a keyed container ("st-key-<key>-box" in the page), so a browser test can find this table
    with st.container(key=f"{key}-box"):
        if df.size > STYLED_CELLS:  # styling every cell of a large bench table costs seconds per rerun
            st.dataframe(df, hide_index=True, width="stretch", key=key, column_config=column_config,
                         placeholder=MISSING)
            return
        # na_rep of a format given per column reaches only those columns: the first format gives every other
        # column (text, C, ...) MISSING for None and NaN, not Streamlit's "None"
        styler = df.style.format(na_rep=MISSING).format({c: formatter(f) for c, f in specs.items()}, na_rep=MISSING)
        # placeholder: the grid draws a missing cell from the raw value ("None"), whatever the Styler says
        st.dataframe(styler, hide_index=True, width="stretch", key=key, column_config=column_config,
                     placeholder=MISSING)


def link_problems_notice() -> None:
    """The invalid values of the link this session was opened with, until the user dismisses them."""
    problems = state.link_problems()
    if problems:
        st.warning("This link had values that could not be used; they were left at their defaults:\n\n"
                   + "\n".join(f"- {p}" for p in problems), icon=":material/link_off:")
        st.button("Dismiss", key="dismiss_link_problems", on_click=state.dismiss_link_problems)


def chart_with_table(fig, df: pd.DataFrame, stem: str, key: str, table_label: str = "Table",
                     title: str = "SSS Lab", runs=(), formats: dict[str, str] | None = None,
                     column_config: dict | None = None, shown: pd.DataFrame | None = None) -> None:
    """A figure, the table behind it, and both as downloads: the table as CSV, the figure as HTML
    (``title`` is the HTML page's title; ``runs``' records go below the figure, see ``figures.figure_html``).

    ``formats`` and ``column_config`` go to ``show_frame``; ``shown``: the columns shown on the page when not
    all of ``df`` (the CSV always holds ``df`` whole)."""
    st.plotly_chart(fig, key=f"{key}-fig", width="stretch")
    show_frame(df if shown is None else shown, key=f"{key}-table", formats=formats, column_config=column_config)
    c1, c2 = st.columns(2)
    with c1:
        frame_csv_button(df, f"{table_label} (CSV)", f"{stem}.csv", key=f"{key}-csv")
    c2.download_button("Figure (HTML)", lambda: figures.figure_html(fig, title, runs), f"{stem}.html", "text/html",
                       key=f"{key}-html", on_click="ignore")


def frame_csv_button(df: pd.DataFrame, label: str, file_name: str, key: str) -> None:
    """A download button for ``df`` as CSV."""
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    st.download_button(label, buf.getvalue(), file_name, "text/csv", key=key, on_click="ignore")
