"""Class story: the paper's story in five steps over one world fact, for a class with five minutes: the fact, the
edit, what lambda_max measures (and does not), where the neighbours went, what SSS changed (and did not)."""

import streamlit as st

from app import inputs, resources, state
from app.panels import story

st.title("Class story")
st.caption("The paper's story in five steps, one screen each. One button runs every edit the story needs (a few "
           "seconds); each number has a one-line help (hover its ? icon). The shared model is never left edited.")

cases = {c.request.case_id: c for c in resources.preset_cases()}
if st.session_state.get(state.STORY_PRESET) not in cases:
    st.session_state[state.STORY_PRESET] = next(iter(cases))  # the Edit page's default fact
cid = st.selectbox("Fact from the built-in world", list(cases), key=state.STORY_PRESET,
                   format_func=lambda i: f"{cases[i].request.prompt} -> {cases[i].request.target_new} "
                                         f"(was {cases[i].request.ground_truth})")
lm = inputs.model_from_state()
held = state.story()
if st.button("Run the story", type="primary", disabled=lm is None, key="story_run"):
    held = story.run_story(lm, cases[cid])
    if held is not None:
        state.set_story(held)
        st.session_state[state.STORY_STEP] = story.STEPS[0]

if held is None:
    st.info("Press 'Run the story': it edits the fact with " + ", ".join(story.edit_words(*e) for e in story.plan())
            + " (each on the unedited model) and then tells what happened, step by step.")
else:
    if held.case_id != cid:
        st.warning(f"These results are of {held.case_id}, not of the fact chosen above: press 'Run the story'.")
    state.setdefault(state.STORY_STEP, story.STEPS[0])
    step = st.radio("Step", story.STEPS, key=state.STORY_STEP, horizontal=True)
    st.subheader(step)
    {0: lambda: story.fact_step(held.main), 1: lambda: story.edit_step(held.main),
     2: lambda: story.lambda_step(held), 3: lambda: story.neighbours_step(held),
     4: lambda: story.sss_step(held)}[story.STEPS.index(step)]()
    nxt = story.STEPS.index(step) + 1
    if nxt < len(story.STEPS):
        st.button(f"Next: {story.STEPS[nxt]}", key="story_next", icon=":material/arrow_forward:",
                  on_click=st.session_state.__setitem__, args=(state.STORY_STEP, story.STEPS[nxt]))
