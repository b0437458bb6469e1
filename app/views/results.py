"""Results: open a report folder made by ``python -m sss_core bench --out DIR`` and browse it."""

import streamlit as st
import streamlit.components.v1 as components

from app import panels, resources, serving, state
from app.messages import show_error
from app.reports import offline_page, plot_figure, read_report, summary_table

TYPE_A_PATH = "(type a path below)"

st.title("Results of a bench run")
st.caption("Open the --out folder of `python -m sss_core bench`: its report (Markdown), the runs into it "
           "(config.json), tables (CSV), per-case results (JSON lines) and plots (HTML) are shown, whichever of "
           "them are there.")



def _picked() -> None:
    """A folder chosen in the list goes into the path box (only when the list itself changed)."""
    pick = st.session_state.get("results_pick")
    if pick and pick != TYPE_A_PATH:
        st.session_state["results_dir"] = pick


def _typed() -> None:
    """A typed path wins over the list: the list goes back to "type a path" unless it names that folder."""
    typed = st.session_state.get("results_dir")
    st.session_state["results_pick"] = typed if typed in st.session_state.get("_results_found", ()) else TYPE_A_PATH


found = resources.list_report_dirs()
st.session_state["_results_found"] = found
roots = ", ".join(f"{r.rstrip('/')}/" for r in serving.results_roots())
if found:
    if st.session_state.get("results_pick") not in (TYPE_A_PATH, *found):
        st.session_state["results_pick"] = TYPE_A_PATH
    st.selectbox(f"Report folders found under {roots}", [TYPE_A_PATH, *found], key="results_pick",
                 on_change=_picked)
folder = st.text_input("Report folder", key="results_dir", placeholder="runs/bench-2026-01-01", on_change=_typed,
                       help=f"This server shows folders under {roots} only" if serving.protected() else None)
state.write_link(None, None, None, {"dir": folder.strip() or None})  # a link opens the same folder

rep = None
if folder.strip():
    try:
        serving.check_folder(folder.strip())  # a typed path and a link's (dir=) alike
        rep = read_report(folder.strip(), allowed=serving.allowed_folder)
    except serving.NotServed as exc:
        st.error(str(exc), icon=":material/block:")
    except Exception as exc:  # noqa: BLE001
        show_error(exc, "Cannot open the report")
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
            panels.show_frame(rep.runs, key="res-runs")
        for name, df in rep.results.items():
            st.subheader(f"Per-case results: {name} ({len(df)} rows)")
            summary = summary_table(df)
            if summary is not None:
                st.markdown("Mean per editor")
                panels.show_frame(summary, key=f"res-sum-{name}")
            panels.show_frame(df, key=f"res-df-{name}")
            panels.frame_csv_button(df, f"{name} as CSV", f"{name.rsplit('.', 1)[0]}.csv", key=f"res-csv-{name}")
        for name, df in rep.tables.items():
            st.subheader(f"Table: {name}")
            panels.show_frame(df, key=f"res-tab-{name}")
        for name, obj in rep.json.items():
            with st.expander(f"{name}"):
                st.json(obj, expanded=False)
        for name, page in rep.plots.items():
            st.subheader(f"Plot: {name}")
            fig = plot_figure(page)
            if fig is not None:  # drawn by the app's own plotly: no script to fetch, works offline
                st.plotly_chart(fig, key=f"res-plot-{name.replace('.', '-')}", width="stretch")
            else:
                components.html(offline_page(page), height=520, scrolling=True)
