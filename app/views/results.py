"""Results: open a report folder made by ``python -m sss_core bench --out DIR`` and browse it."""

import streamlit as st
import streamlit.components.v1 as components

from app import panels, resources
from app.messages import show_error
from app.reports import read_report, summary_table

st.title("Results of a bench run")
st.caption("Open the --out folder of `python -m sss_core bench`: its report (Markdown), the runs into it "
           "(config.json), tables (CSV), per-case results (JSON lines) and plots (HTML) are shown, whichever of "
           "them are there.")

found = resources.list_report_dirs()
if found:
    pick = st.selectbox("Report folders found under runs/ and docs/results/", ["(type a path below)", *found],
                        key="results_pick")
    if pick != "(type a path below)":
        st.session_state["results_dir"] = pick
folder = st.text_input("Report folder", key="results_dir", placeholder="runs/bench-2026-01-01")

if folder:
    try:
        rep = read_report(folder)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, "Cannot open the report")
        rep = None
    if rep is not None:
        for problem in rep.problems:
            st.warning(problem)
        if rep.empty:
            st.info(f"{rep.folder} has no .md, .csv, .jsonl, .json or .html files.")
        for name, text in rep.markdown.items():
            with st.expander(f"{name}", expanded=name.lower().startswith("report")):
                st.markdown(text)
        if rep.runs is not None:
            st.subheader(f"Runs into this folder ({len(rep.runs)})")
            st.dataframe(rep.runs, hide_index=True, width="stretch", key="res-runs")
        for name, df in rep.results.items():
            st.subheader(f"Per-case results: {name} ({len(df)} rows)")
            summary = summary_table(df)
            if summary is not None:
                st.markdown("Mean per editor")
                st.dataframe(summary, hide_index=True, width="stretch", key=f"res-sum-{name}")
            st.dataframe(df, hide_index=True, width="stretch", key=f"res-df-{name}")
            panels.frame_csv_button(df, f"{name} as CSV", f"{name.rsplit('.', 1)[0]}.csv", key=f"res-csv-{name}")
        for name, df in rep.tables.items():
            st.subheader(f"Table: {name}")
            st.dataframe(df, hide_index=True, width="stretch", key=f"res-tab-{name}")
        for name, obj in rep.json.items():
            with st.expander(f"{name}"):
                st.json(obj, expanded=False)
        for name, page in rep.plots.items():
            st.subheader(f"Plot: {name}")
            components.html(page, height=520, scrolling=True)
