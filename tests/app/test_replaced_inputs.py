"""Issue 24.4: the app never shows results of an input the user has replaced. An uploaded file is kept by its
content, not its name and size; typed paraphrases and neighbours typed for another prompt are flagged; the
results on screen are marked as an earlier run when the form's typed probes or advanced settings differ from
the run's record."""

from __future__ import annotations

from pathlib import Path

from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok  # noqa: F401 (fixtures)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FAST = 5  # FT-L steps: enough to run, quick on two cores
PROMPT, TARGET = "Ulla Kessel lives in", "Rome"  # not a world fact: only the typed probes come with it


def _infos(at) -> list[str]:
    """The info messages, less the hint that a typed fact is outside the shipped model's world (its own test)."""
    return [i.value for i in at.info if "of the built-in world" not in i.value and "not in the built-in world"
            not in i.value]


def _warnings(at) -> list[str]:
    return [w.value for w in at.warning]


def _upload(at, name: str, data: bytes):
    at.file_uploader[0].set_value((name, data, "application/json")).run()
    assert_ok(at)
    return at.selectbox(key="upload_choice").options


def test_another_file_with_the_same_name_and_size_is_read_again(app):
    first = (FIXTURES / "zsre.json").read_bytes()
    second = first.replace(b"Kessel", b"Kassel")  # another file of the same name and size
    assert len(second) == len(first) and second != first
    app.radio(key="req_source").set_value("Upload EasyEdit JSON").run()
    assert _upload(app, "data.json", first)[0] == "0: Which river does Velmora Bridge cross? -> Kessel (was Ostra)"
    assert _upload(app, "data.json", second)[0] == "0: Which river does Velmora Bridge cross? -> Kassel (was Ostra)"
    assert app.selectbox(key="upload_choice").label == "Record (4 in data.json)"
    assert app.session_state["_uploaded"][1][0].request.target_new == "Kassel"


def _type_fact(at, prompt: str = PROMPT, paraphrases: str = "", neighbours: str = ""):
    at.radio(key="req_source").set_value("Type a fact").run()
    at.text_input(key="typed_prompt").set_value(prompt).run()
    at.text_input(key="typed_subject").set_value("").run()
    at.text_input(key="typed_target").set_value(TARGET).run()
    at.text_area(key="typed_paraphrases").set_value(paraphrases).run()
    at.text_area(key="typed_neighbours").set_value(neighbours).run()
    assert_ok(at)


def test_paraphrases_and_neighbours_typed_for_another_prompt_are_flagged(app):
    _type_fact(app, paraphrases="Ulla Kessel's home is in", neighbours="Dora Maren lives in")
    assert _warnings(app) == []
    app.text_input(key="typed_prompt").set_value("Ulla Kessel works in").run()
    assert _warnings(app) == ["These paraphrases and neighbours were typed for 'Ulla Kessel lives in', not for the "
                              "prompt above; a run uses them with the prompt above. Edit them, keep them for this "
                              "prompt, or clear them."]
    app.button(key="typed_probes_keep").click().run()
    assert _warnings(app) == []
    app.text_input(key="typed_prompt").set_value("Ulla Kessel studied in").run()
    assert _warnings(app) == ["These paraphrases and neighbours were typed for 'Ulla Kessel works in', not for the "
                              "prompt above; a run uses them with the prompt above. Edit them, keep them for this "
                              "prompt, or clear them."]
    app.text_area(key="typed_neighbours").set_value("").run()  # editing them ties them to the prompt now
    assert _warnings(app) == []
    app.text_input(key="typed_prompt").set_value(PROMPT).run()
    assert _warnings(app) == ["These paraphrases were typed for 'Ulla Kessel studied in', not for the prompt above; "
                              "a run uses them with the prompt above. Edit them, keep them for this prompt, or clear "
                              "them."]
    app.button(key="typed_probes_clear").click().run()
    assert _warnings(app) == []
    assert app.text_area(key="typed_paraphrases").value == ""
    assert app.text_area(key="typed_neighbours").value == ""


def _notice(described: str) -> str:
    return (f"Earlier run: the results below are for {described}; the inputs above have changed since. Run again "
            "to update them.")


def test_changed_typed_probes_mark_the_results_as_an_earlier_run(app):
    app.session_state["cfg:ft-l:steps"] = FAST
    app.selectbox(key="editor").set_value("ft-l").run()
    _type_fact(app, paraphrases="Ulla Kessel's home is in")
    app.button(key="run_edit").click().run()
    assert_ok(app)
    assert _infos(app) == []
    app.text_area(key="typed_paraphrases").set_value("Ulla Kessel's home is in\nUlla Kessel resides in").run()
    assert _infos(app) == [_notice("ft-l, 'Ulla Kessel lives in' -> 'Rome' (probes: 1 paraphrase)")]
    app.text_area(key="typed_paraphrases").set_value("Ulla Kessel's home is in").run()
    assert _infos(app) == []
    app.text_area(key="typed_neighbours").set_value("Dora Maren lives in").run()
    assert _infos(app) == [_notice("ft-l, 'Ulla Kessel lives in' -> 'Rome' (probes: 1 paraphrase)")]


def test_changed_advanced_settings_mark_the_results_as_an_earlier_run(app):
    app.session_state["cfg:ft-l:steps"] = FAST
    app.selectbox(key="editor").set_value("ft-l").run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    run = app.session_state["_run"]
    r = run.case.request
    assert _infos(app) == []
    app.number_input(key="cfg:ft-l:steps").set_value(FAST + 1).run()
    assert _infos(app) == [_notice(f"ft-l, {r.prompt!r} -> {r.target_new!r} (settings steps={FAST})")]
    app.number_input(key="cfg:ft-l:steps").set_value(FAST).run()
    assert _infos(app) == []
