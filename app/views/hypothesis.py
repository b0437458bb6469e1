"""Hypothesis: does an edit in a sparse region damage its neighbours less? Over N world edits run here,
or over a bench run's results, with the bench report's statistics."""

from pathlib import Path

import streamlit as st

from app import inputs, panels, resources, serving, state
from app.hypothesis import (CASES_FILES, RESULTS_FILE, HypothesisJob, group_size, hypothesis_rows, read_folder,
                            readable_folder, run_group, running_means, settings_text, sss_effect_frame)
from app.messages import show_error
from sss_core.editors import EDITORS
from sss_core.evaluation.datasets import load_cases
from sss_core.evaluation.hypothesis import correlations
from sss_core.sss import n_hidden_states

SOURCES = ("Run world edits here", "A bench run's results")
N_BOOT = 1000  # bootstrap resamples of every CI, as the bench report


@st.cache_data(show_spinner="Reading the results and bootstrapping the correlations...", max_entries=4)
def _folder_statistics(folder: str, stamp: float):
    """The frame, file name, correlations and paired SSS effect of a bench folder (cached per file state)."""
    frame, name = read_folder(folder)
    return frame, name, correlations(hypothesis_rows(frame), N_BOOT), sss_effect_frame(frame, N_BOOT)


def folder_settings(folder: str) -> dict[str, str] | None:
    """Editor -> the settings a bench folder's last run gave it, in words (from its config.json); None if unknown."""
    from sss_core.errors import SSSError
    from sss_core.evaluation.store import RunLog

    try:
        config = RunLog(Path(folder) / "config.json").latest("config") or {}
        return {e: settings_text(e, config.get("settings") or {}) for e in config.get("editors", ()) if e in EDITORS}
    except (OSError, ValueError, SSSError):
        return None


def _stamp(folder: str) -> float:
    """The newest modification time of the folder's files (a rerun of the bench invalidates the cache)."""
    return max((f.stat().st_mtime for f in Path(folder).iterdir() if f.is_file()), default=0.0)


st.title("The sparse-space hypothesis")
st.caption("The paper's claim: an edit whose sentence sits in a semantically sparse region of embedding space "
           "(small λ_max, or far from its nearest neighbours) damages its neighbours less. Each point below is "
           "one edit; damage = 1 − locality, the share of neighbour tokens whose prediction the edit changed.")
if st.session_state.get("hyp_source") not in SOURCES:  # absent, or a link's value that is not a source
    st.session_state["hyp_source"] = SOURCES[0]
source = st.radio("Data", SOURCES, key="hyp_source", horizontal=True)

if source == SOURCES[0]:
    lm = inputs.model_picker()
    state.setdefault("hyp_editors", [e for e in ("ft-l", "ft-l+sss") if e in EDITORS])
    state.setdefault("hyp_n", 30)
    state.setdefault("hyp_seed", 0)
    state.setdefault("hyp_k", 10)
    c1, c2, c3 = st.columns([3, 1, 1])
    editors = c1.multiselect("Editors", list(EDITORS), key="hyp_editors",
                             help="Each runs every edit; an editor with and one without SSS give the paired effect. "
                                  "Advanced settings (and C) come from the Edit page's choices for each editor.")
    n_max = serving.limit("hypothesis_n")  # per session; the server's owner sets it (docs/app.md, "Serve a class")
    if int(st.session_state.get("hyp_n", 0)) > n_max:  # e.g. a link's hn above this server's limit
        st.session_state["hyp_n"] = n_max
    n = int(c2.number_input("World edits (N)", min_value=min(4, n_max), max_value=n_max, step=5, key="hyp_n",
                            help="The first N cases of the world's test split, as `bench --data world --n N`. "
                                 + serving.limit_note("hypothesis_n")))
    c2.caption(f"N: at most {n_max} here")  # the help names the variable that sets it
    seed = int(c3.number_input("Seed", min_value=0, max_value=99, key="hyp_seed",
                               help="Draws the new targets and probes (as the bench's seed)"))
    c4, c5 = st.columns(2)
    k = int(c4.number_input("k of the kNN distance", min_value=1, max_value=100, key="hyp_k",
                            help="Neighbours among the world's fact prompts (the bench's --knn)"))
    last = n_hidden_states(lm.model) - 1 if lm is not None else 0
    state.setdefault("hyp_layer", last)
    if lm is not None and int(st.session_state.get("hyp_layer", last)) > last:  # a link made on a deeper model
        st.session_state["hyp_layer"] = last
    layer = int(c5.number_input("λ_max read at layer", min_value=0, max_value=max(last, 0), key="hyp_layer",
                                help=f"The hidden states the gradient of λ_max before the edit is read at: 0 the input "
                                     f"embeddings, i the hidden states after i blocks (block i-1's output), {last} the last (the paper's). "
                                     "docs/results/lambda-layer compares them."))
    choices = [inputs.choice_for(e) for e in editors]
    st.caption("Each editor runs with its Advanced settings from the Edit page (C: the editor's default): "
               + "; ".join(f"**{c.editor}**: {settings_text(c.editor, c.overrides)}" for c in choices))
    b1, b2, b3 = st.columns([1, 1, 4])
    start = b1.button("Run", type="primary", key="hyp_run", disabled=lm is None or not editors)
    start = start or (state.take_link_run() and bool(editors))  # a shared link re-runs the edits it showed
    failed = False
    if start and lm is not None:  # the job exists before Stop is drawn, so Stop is enabled while it runs
        try:
            state.set_hypothesis_job(HypothesisJob.start(load_cases("world", n, seed),
                                                         [(c.editor, c.overrides) for c in choices], seed, k,
                                                         -1 if layer == last else layer))
        except Exception as exc:  # noqa: BLE001 - shown as a message; the job before it is kept
            show_error(exc, "Could not start")
            failed = True
    job = None if failed else state.hypothesis_job()
    # Stop and Continue are callbacks: a click during the run reruns the script, which stops the loop below
    # at its next message to the page (between two edits); the callback runs first and marks the job stopped.
    b2.button("Stop", key="hyp_stop", on_click=state.stop_hypothesis, disabled=job is None or not job.pending)
    b3.button("Continue", key="hyp_continue", on_click=state.resume_hypothesis,
              disabled=job is None or not job.stopped or len(job.records) >= job.total)
    st.caption("Stop takes effect between two edits: the edit under way finishes and is kept, the rest are not "
               "run, and the results so far are shown. Continue runs the rest. Changing a widget while a run is "
               "going also pauses it at the next edit; it then goes on by itself.")
    if start and job is not None and len(job.cases) < n:
        st.info(f"The world's test split holds {len(job.cases)} facts: N = {len(job.cases)} runs.")
    if job is not None and job.pending and lm is not None:
        bar = st.progress(len(job.records) / job.total, text="Starting")
        queue_box = st.empty()  # "Waiting for the model: ..." while other sessions' edits go first
        live = st.empty()  # the means so far, per editor, updated after each group of edits
        while job.pending:
            name, _, case = job.next_edit()
            n_next = min(group_size(job) * len(job.editors), job.total - len(job.records))
            bar.progress(len(job.records) / job.total,
                         text=f"{len(job.records)} of {job.total} edits; now {n_next} more, side by side, from "
                              f"{case.request.prompt!r} -> {case.request.target_new!r}")
            try:
                with serving.st_turn(lm.model, f"Hypothesis edits {len(job.records) + 1}-"
                                               f"{len(job.records) + n_next} of {job.total}", queue_box):
                    run_group(lm, job)  # one turn per group: other sessions' edits queued meanwhile go first
            except Exception as exc:  # noqa: BLE001 - e.g. a trained editor without its checkpoint
                job.stopped = True
                show_error(exc, f"{name} failed")
            live.dataframe(running_means(job.frame()), hide_index=True)
        bar.progress(len(job.records) / job.total, text=f"{len(job.records)} of {job.total} edits in "
                                                        f"{job.seconds:.1f} s")
        if not job.stopped:
            st.rerun()  # draw Stop (disabled now) and Continue as they are after the run, not as during it
    if job is not None and job.records:
        if job.stopped and len(job.records) < job.total:
            st.warning(f"Stopped after {len(job.records)} of {job.total} edits; the results below are over those.")
        else:
            st.success(f"{len(job.records)} edits ({len(job.cases)} world cases x {len(job.editors)} editors, "
                       f"seed {job.seed}) in {job.seconds:.1f} s.")
        frame = job.frame()
        failed = int(frame["error"].notna().sum())
        if failed:
            st.warning(f"{failed} edit(s) failed and are left out: " + "; ".join(
                dict.fromkeys(str(e)[:120] for e in frame["error"].dropna())))
        if not job.pending:
            ck = (id(job), len(job.records))
            held = st.session_state.get("_hyp_stats")
            if held is None or held[0] != ck:
                with st.spinner("Bootstrapping the correlations..."):
                    held = (ck, correlations(hypothesis_rows(frame), N_BOOT), sss_effect_frame(frame, N_BOOT))
                st.session_state["_hyp_stats"] = held
            panels.hypothesis_results(frame, held[1], held[2], key="hyp", c_of=job.c_of, settings=job.settings())
    state.write_link(None, None, None, {
        "hsrc": source, "hyp": editors, "hn": n, "hseed": seed, "hk": k, "hlayer": layer,
        "hcfg": {c.editor: settings for c in choices
                 if (settings := {k: v for k, v in c.overrides.items() if k != EDITORS[c.editor].c_field})} or None},
        ran=job is not None and bool(job.records))
else:
    found = [d for d in resources.list_report_dirs() if readable_folder(d)]
    c1, c2 = st.columns(2)
    roots = ", ".join(f"{r.rstrip('/')}/" for r in serving.results_roots())
    picked = c1.selectbox("Bench folder found (results.jsonl, or a report's cases.csv)", found, key="hyp_folder",
                          index=0 if found else None, help=f"Folders under {roots} with bench results")
    typed = c2.text_input("... or type a folder", key="hyp_folder_typed", placeholder="runs/world",
                          help="The --out folder of `python -m sss_core bench`; used instead of the list when given")
    folder = typed.strip() or picked
    try:  # a typed folder and a link's (hdir=) alike: only those this server shows
        if folder:
            serving.check_folder(folder)
            for file in (RESULTS_FILE, *CASES_FILES):  # a file linked to somewhere else is refused too
                if (Path(folder) / file).exists():
                    serving.check_folder(Path(folder) / file)
    except serving.NotServed as exc:
        st.error(str(exc), icon=":material/block:")
        folder = None
    if folder:
        try:
            frame, name, corrs, effects = _folder_statistics(folder, _stamp(folder))
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "Cannot read the results")
        else:
            st.caption(f"Read {name} of {folder}: {len(frame)} results.")
            panels.hypothesis_results(frame, corrs, effects, key="hyp-folder",
                                      c_of=lambda e: inputs.choice_for(e).c, settings=folder_settings(folder))
    state.write_link(None, None, None, {"hsrc": source, "hdir": typed.strip() or None})
