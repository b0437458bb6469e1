"""Issue 24.6 and 24.8 on screen: the Sequential page says how many edits retention counts and that a
superseded one is left out; the Edit page says what an edit to the model's current answer still did."""

from __future__ import annotations

import pytest

from sss_core import analysis

from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok  # noqa: F401 (fixtures)


def _type_fact(at, target: str) -> None:
    """The typed request "The capital of France is" -> ``target`` (subject France)."""
    at.radio(key="req_source").set_value("Type a fact").run()
    at.text_input(key="typed_prompt").input("The capital of France is")
    at.text_input(key="typed_subject").input("France")
    at.text_input(key="typed_target").input(target).run()


@pytest.mark.parametrize("editor", ["rome", "ft-l"])
def test_edit_view_shows_what_an_edit_to_the_current_answer_did(app, editor):
    _type_fact(app, "Paris")
    app.selectbox(key="editor").set_value(editor).run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    run = app.session_state["_run"]
    notice = analysis.current_answer_notice(run)
    assert notice is not None and notice.startswith(
        "'Paris' was already the model's top answer to 'The capital of France is' before the edit; ")
    assert notice in [w.value for w in app.warning]


def test_sequential_view_says_retention_leaves_the_superseded_edit_out(app):
    app.switch_page("app/views/sequential.py").run()
    app.selectbox(key="seq_editor").set_value("ft-l").run()
    _type_fact(app, "Rome")
    app.button(key="seq_apply").click().run()
    assert_ok(app)
    _type_fact(app, "Berlin")
    app.button(key="seq_apply").click().run()
    assert_ok(app)
    history = app.session_state["_seq_history"]
    assert [s.request.target_new for s in history] == ["Rome", "Berlin"]
    assert history[-1].retention == 1.0
    captions = [c.value for c in app.caption]
    assert ("After edit 2: retention over the 1 edit still meant to hold; 1 superseded (a later edit re-edited the "
            "same fact: same prompt, or same subject and relation) and left out.") in captions
    table = app.dataframe[0].value
    assert list(table["retention (edits still meant to hold)"]) == [1.0, 1.0]
    # each step's counts in words are in the history's CSV; the page says the last step's above the table
    from sss_core.analysis import retention_note
    assert retention_note(history[0]) == "retention over the 1 edit so far; none superseded"
    assert "retention counts" not in table.columns
