"""Class story: the paper's claim, then its story in five steps over one world fact, for a class with five minutes:
the fact, the edit, what lambda_max measures (and does not), where the sentences went, whether the SSS term helped,
and what that says about the claim. The fact, the step and the story's run records live in the URL
(``story``, ``sstep``, ``srec``), so a link or a refresh replays the same edits and shows the same step."""

import streamlit as st

from app import inputs, resources, state
from app.panels import story
from sss_core.record import pack_records

st.title("Class story")

cases = {c.request.case_id: c for c in resources.preset_cases()}
linked_fact = st.session_state.get(state.STORY_PRESET)
if linked_fact not in cases:
    if linked_fact is not None:
        st.warning(f"The link's fact {str(linked_fact)[:60]!r} is not one of the built-in world's presets here: "
                   "the story starts on the first one.")
    st.session_state[state.STORY_PRESET] = next(iter(cases))  # the Edit page's default fact
linked_step = st.session_state.pop(state.LINK_STORY_STEP, None)
if isinstance(linked_step, int) and 1 <= linked_step <= len(story.STEPS):
    st.session_state[state.STORY_STEP] = story.STEPS[linked_step - 1]
lm = inputs.model_from_state()
held = state.story()
shown = held is not None or bool(st.session_state.get(state.LINK_STORY))  # results on screen in this run
chooser = st.expander("The fact, and running the story again" if shown else "The fact", expanded=not shown,
                      icon=":material/tune:")
left, right = chooser.columns([4, 1], vertical_alignment="bottom")
cid = left.selectbox("Fact from the built-in world", list(cases), key=state.STORY_PRESET,
                     format_func=lambda i: f"{cases[i].request.prompt} -> {cases[i].request.target_new} "
                                           f"(was {cases[i].request.ground_truth})")
if right.button("Run the story", type="primary", disabled=lm is None, key="story_run", width="stretch"):
    held = story.run_story(lm, cases[cid])
    if held is not None:
        state.set_story(held)
        st.session_state[state.STORY_STEP] = story.STEPS[0]
        st.rerun()  # the chooser folds and the run's status box goes: "Next step" sits where it does on every step
linked = st.session_state.pop(state.LINK_STORY, None)
if linked:
    state.take_link_run()  # a story link replays its records here; no other view takes this link's run
if held is None and linked and lm is not None:
    problem = story.records_problem(linked, cid)
    if problem is not None:
        st.warning(f"The link's edits cannot be replayed: {problem}. Press 'Run the story'.")
    else:
        held = story.replay_story(lm, linked, cid)
        if held is not None:
            state.set_story(held)
            st.rerun()  # as after a run: no status box above the step (a linked step fits the screen as it did)

if held is None:
    st.info(story.INTRO)
    state.write_link(None, None, None, {"story": cid})
else:
    if held.case_id != cid:
        st.warning(f"These results are of {held.case_id}, not of the fact chosen above: press 'Run the story'.")
    state.setdefault(state.STORY_STEP, story.STEPS[0])
    nav, forward = st.columns([5, 1], vertical_alignment="center")
    step = nav.radio("Step", story.STEPS, key=state.STORY_STEP, horizontal=True, label_visibility="collapsed")
    n = story.STEPS.index(step)
    # at the top, in the same place on every step: the class clicks through, and from the last step back to the
    # first (no tooltip: it would cover the bar above)
    last = n + 1 == len(story.STEPS)
    forward.button("Back to step 1" if last else "Next step", key="story_back" if last else "story_next",
                   icon=":material/first_page:" if last else ":material/arrow_forward:", type="primary",
                   width="stretch", on_click=st.session_state.__setitem__,
                   args=(state.STORY_STEP, story.STEPS[0 if last else n + 1]))
    state.write_link(None, None, None, {"story": held.case_id, "sstep": n + 1,
                                        "srec": pack_records([r.record for r in held.runs()])}, ran=True)
    {0: lambda: story.fact_step(held), 1: lambda: story.edit_step(held.main),
     2: lambda: story.lambda_step(held), 3: lambda: story.neighbours_step(held),
     4: lambda: story.sss_step(held)}[n]()
