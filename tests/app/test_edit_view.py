"""The Edit page: opens with no set-up, runs real edits, shows errors as messages, shares state in the URL."""

from __future__ import annotations

import json

import pytest

from sss_core.editors import EDITORS, editor_config

from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok, errors  # noqa: F401 (fixtures)


def _run(at):
    return at.session_state["_run"]


def test_opens_on_the_default_model_without_setup(app):
    assert app.title[0].value == "Edit a fact"
    assert app.text_input(key="model_name").value == "default"
    assert [o.split(" - ")[0] for o in app.selectbox(key="editor").options] == list(EDITORS)
    assert app.selectbox(key="editor").value == "ft-l+sss"
    assert app.slider(key="C").value == pytest.approx(0.9)
    run_button = app.button(key="run_edit")
    assert not run_button.disabled
    # the advanced expander holds one input per editor setting except C
    labels = {w.label for w in (*app.number_input, *app.selectbox, *app.text_input, *app.checkbox)}
    import dataclasses
    fields = {f.name for f in dataclasses.fields(EDITORS["ft-l+sss"].config_cls)} - {EDITORS["ft-l+sss"].c_field}
    assert fields <= labels
    # the preset's probes, each kind with its count, and the edit prompt besides them (the run's table has 9 rows)
    assert ("8 probes come with it, besides the edit prompt itself: paraphrase ×2, neighbour ×2, post-neighbour, "
            "distract-neighbour, unrelated attribute, reversed relation.") in [c.value for c in app.caption]


def test_ftl_edit_flips_the_prompts_top1_to_the_new_target(app):
    app.selectbox(key="editor").set_value("ft-l").run()
    # through the advanced expander: no norm constraint, a larger step (the shipped defaults are gentle)
    app.text_input(key="cfg:ft-l:norm_constraint").input("None")
    app.number_input(key="cfg:ft-l:lr").set_value(1e-3).run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    run = _run(app)
    target = run.case.request.target_new
    table = app.dataframe[0].value
    row = table[table["group"] == "edit prompt"].iloc[0]
    from app.resources import get_model
    tok = get_model("default").tok
    first = tok.decode(tok(run.case.request.prompt + " " + target)["input_ids"][len(tok(run.case.request.prompt)["input_ids"])])
    before, after = row["top-1 before → after"].split(" → ")  # one column, so the table fits at 1440 px
    assert after == first != before
    assert row["top-1"].startswith("FLIPPED")
    assert run.config["norm_constraint"] is None and run.config["lr"] == 1e-3
    shown = {m.label: m.value for m in app.metric}
    assert "λ_max before (new target)" in shown and "λ_max after (new target)" in shown
    assert len(app.get("plotly_chart")) >= 2  # the projection and the weight delta
    assert run.delta_norms and all(v > 0 for v in run.delta_norms.values())
    # the run's JSON export holds config and results
    payload = run.to_json_dict()
    json.dumps(payload, default=str)
    assert payload["config"]["editor"] == "ft-l" and payload["results"]["probes"][0]["group"] == "rewrite"


def test_the_model_is_unedited_after_a_run(app):
    import torch
    from app.resources import get_model
    model = get_model("default").model
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    app.button(key="run_edit").click().run()
    assert_ok(app)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("prompt,subject,target,message", [
    ("The capital of France is", "France", "   ", "new target is empty"),
    ("   ", "", "Rome", "prompt is empty"),
    ("The capital of France is", "Germany", "Rome", "does not occur in the prompt"),
])
def test_bad_requests_are_messages_and_the_app_stays_usable(app, prompt, subject, target, message):
    app.radio(key="req_source").set_value("Type a fact").run()
    app.text_input(key="typed_prompt").input(prompt)
    app.text_input(key="typed_subject").input(subject)
    app.text_input(key="typed_target").input(target).run()
    app.button(key="run_edit").click().run()
    assert not app.exception
    assert any(message in e for e in errors(app)), errors(app)
    assert "_run" not in app.session_state
    app.text_input(key="typed_prompt").input("The capital of France is")
    app.text_input(key="typed_subject").input("France")
    app.text_input(key="typed_target").input("Rome").run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    assert _run(app).case.request.target_new == "Rome"


def test_bad_model_path_is_a_message(app):
    app.text_input(key="model_name").input("/no/such/model").run()
    assert not app.exception
    assert any("no model folder" in e for e in errors(app))
    assert app.button(key="run_edit").disabled
    app.text_input(key="model_name").input("default").run()
    assert_ok(app)


def test_bad_advanced_setting_is_a_message(app):
    app.selectbox(key="editor").set_value("ft-l").run()
    app.number_input(key="cfg:ft-l:steps").set_value(0).run()
    app.button(key="run_edit").click().run()
    assert not app.exception
    assert any("steps must be at least 1" in e for e in errors(app))


def test_request_editor_and_c_are_in_the_url(app):
    from app.resources import preset_by_id
    case = preset_by_id(app.session_state["preset"])
    qp = app.query_params
    assert qp["editor"] == "ft-l+sss" and qp["C"] == "0.9"
    assert qp["prompt"] == case.request.prompt and qp["target"] == case.request.target_new
    app.slider(key="C").set_value(0.5).run()
    assert app.query_params["C"] == "0.5"


def test_a_shared_link_restores_request_editor_and_c():
    from streamlit.testing.v1 import AppTest

    from apptest_support import APP
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params.update({"prompt": "The capital of Spain is", "subject": "Spain", "target": "Lisbon",
                            "editor": "ft-l+sss", "C": "0.3"})
    at.run()
    assert_ok(at)
    assert at.selectbox(key="editor").value == "ft-l+sss"
    assert at.radio(key="req_source").value == "Type a fact"
    assert at.text_input(key="typed_prompt").value == "The capital of Spain is"
    assert at.text_input(key="typed_target").value == "Lisbon"
    assert at.slider(key="C").value == pytest.approx(0.3)


def test_upload_an_easyedit_file(app, tmp_path):
    records = [{"case_id": 7, "prompt": "The capital of France is", "target_new": "Rome", "subject": "France",
                "ground_truth": "Paris", "rephrase_prompt": "The capital city of France is",
                "locality_prompt": "The capital of Spain is", "locality_ground_truth": "Madrid"},
               {"case_id": 8, "prompt": "The capital of Spain is", "target_new": "Lisbon", "subject": "Spain",
                "ground_truth": "Madrid", "rephrase_prompt": "Spain's capital is",
                "locality_prompt": "The capital of Italy is", "locality_ground_truth": "Rome"}]
    app.radio(key="req_source").set_value("Upload EasyEdit JSON").run()
    app.file_uploader[0].set_value(("cases.json", json.dumps(records).encode(), "application/json")).run()
    assert_ok(app)
    app.selectbox(key="upload_choice").set_value(1).run()
    app.selectbox(key="editor").set_value("ft-l").run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    run = _run(app)
    assert run.case.request.target_new == "Lisbon"
    assert {r.group for r in run.rows} >= {"rewrite", "paraphrase", "neighbour"}


def test_malformed_upload_is_a_message(app):
    app.radio(key="req_source").set_value("Upload EasyEdit JSON").run()
    app.file_uploader[0].set_value(("bad.json", b"[{\"foo\": 1}]", "application/json")).run()
    assert not app.exception
    assert any("cannot tell the format" in e for e in errors(app))


def test_editor_defaults_shown_in_advanced(app):
    cfg = editor_config("ft-l+sss")
    assert app.number_input(key="cfg:ft-l+sss:steps").value == cfg.steps
    assert app.number_input(key="cfg:ft-l+sss:layer").value == cfg.layer
