"""A link carries the run record of what is on screen: opening it replays exactly that run (advanced settings,
typed probes, model), the form shows the record, and the run caption names the non-default settings."""

from __future__ import annotations

import pytest

from apptest_support import APP, _no_umap_warmup, _restore_torch_threads, app, assert_ok, open_link  # noqa: F401
from sss_core.record import RunRecord


_open = open_link  # a new session opened from a link (apptest_support)


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _typed_run_with_settings(app):
    app.selectbox(key="editor").set_value("ft-l").run()
    app.session_state["cfg:ft-l:steps"] = 3
    app.session_state["cfg:ft-l:layer"] = 2
    app.radio(key="req_source").set_value("Type a fact").run()
    app.text_input(key="typed_prompt").input("The capital of France is")
    app.text_input(key="typed_subject").input("France")
    app.text_input(key="typed_target").input("Rome")
    app.text_area(key="typed_neighbours").input("The capital of Spain is\nThe capital of Italy is")
    app.run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    return app


@pytest.mark.parametrize("page", [None, "app/views/projection.py"])
def test_link_replays_settings_and_typed_probes_exactly(app, page):
    _typed_run_with_settings(app)
    shown = _metrics(app)
    caption = next(m.value for m in app.markdown if m.value.startswith("**ft-l**"))
    assert caption.endswith("; settings changed from the defaults: layer = 2, steps = 3")
    qp = dict(app.query_params)
    record = RunRecord.from_link(qp["rec"])
    assert (record.settings["steps"], record.settings["layer"]) == (3, 2)
    assert [p.prompt for p in record.case.probes if p.group == "neighbour"][-2:] == ["The capital of Spain is",
                                                                                      "The capital of Italy is"]
    at = _open(qp, page)
    assert_ok(at)
    if page is None:
        assert _metrics(at) == shown  # the same numbers: reliability, generality, locality, lambda_max
        assert at.session_state["cfg:ft-l:steps"] == 3 and at.session_state["cfg:ft-l:layer"] == 2
        assert at.text_area(key="typed_neighbours").value == "The capital of Spain is\nThe capital of Italy is"
    run = at.session_state["_run"]
    assert run.record.digest() == record.digest()
    assert run.config["steps"] == 3 and run.config["layer"] == 2
    if page is None:  # the replay's caption names the same record as the original's, under another run id
        replayed = next(m.value for m in at.markdown if m.value.startswith("**ft-l**"))
        assert f"record `{record.digest()}`" in caption and f"record `{record.digest()}`" in replayed
        assert run.run_id != app.session_state["_run"].run_id
        from app.panels.common import file_stem
        assert file_stem(run) == file_stem(app.session_state["_run"]) == f"sss-ft-l-{record.digest()}"


def test_a_damaged_record_in_a_link_is_named_not_silently_dropped():
    at = _open({"rec": "abc", "run": "1"})
    assert not at.exception
    text = " ".join(w.value for w in at.warning)
    assert "rec=abc: the run record in the link cannot be replayed: the link's run record is damaged" in text


def _dataframe(at, i: int = 0):
    return at.dataframe[i].value


def test_c_sweep_of_a_trained_editor_offers_only_checkpoint_cs_and_names_them():
    at = _open({}, "app/views/sweep.py")
    at.selectbox(key="sweep_editor").set_value("mend+sss").run()
    assert at.multiselect(key="sweep_cs").options == ["0.0", "0.9"]
    assert at.info[0].value.startswith("mend+sss is trained: its C is the C its checkpoint was trained with, so the "
                                       "sweep offers only the shipped checkpoints' C (0, 0.9)")
    at.button(key="run_sweep").click().run()
    assert_ok(at)
    table = _dataframe(at)
    assert list(table["C"]) == [0.0, 0.9] and list(table["checkpoint"]) == ["mend", "mend-sss"]
    qp = dict(at.query_params)
    again = _open(qp, "app/views/sweep.py")
    assert_ok(again)
    replayed = _dataframe(again)
    assert list(replayed["checkpoint"]) == ["mend", "mend-sss"]
    assert list(replayed["reliability"]) == list(table["reliability"])


def test_compare_link_replays_both_recorded_runs():
    at = _open({}, "app/views/compare.py")
    at.session_state["cfg:ft-l:steps"] = 4
    at.session_state["cfg:ft-l+sss:steps"] = 4
    at.run()
    at.button(key="run_compare").click().run()
    assert_ok(at)
    a, b = at.session_state["_compare"]
    qp = dict(at.query_params)
    assert RunRecord.from_link(qp["rec"]).digest() == a.record.digest()
    assert RunRecord.from_link(qp["recb"]).digest() == b.record.digest()
    again = _open(qp, "app/views/compare.py")
    assert_ok(again)
    a2, b2 = again.session_state["_compare"]
    assert (a2.record.settings["steps"], b2.record.settings["steps"]) == (4, 4)
    assert a2.result.metrics == a.result.metrics and b2.result.metrics == b.result.metrics


def test_hypothesis_view_says_its_settings_and_its_link_carries_them():
    at = _open({}, "app/views/hypothesis.py")
    at.session_state["cfg:ft-l:steps"] = 3
    at.multiselect(key="hyp_editors").set_value(["ft-l", "ft-l+sss"])
    at.number_input(key="hyp_n").set_value(4).run()
    assert any(c.value.endswith("**ft-l**: steps = 3; **ft-l+sss**: C = 0.9 (loss weight)") for c in at.caption)
    at.button(key="hyp_run").click().run()
    assert_ok(at)
    shown = next(m.value for m in at.markdown if m.value.startswith("**Settings of each editor"))
    assert shown == "**Settings of each editor in these edits:** ft-l: steps = 3; ft-l+sss: C = 0.9 (loss weight)"
    table = at.dataframe[0].value
    assert set(zip(table["editor"], table["settings"])) == {("ft-l", "steps = 3"),
                                                            ("ft-l+sss", "C = 0.9 (loss weight)")}
    qp = dict(at.query_params)
    assert (qp["hyp"], qp["hn"], qp["hcfg"], qp["run"]) == ("ft-l,ft-l+sss", "4", '{"ft-l":{"steps":3}}', "1")
    again = _open(qp, "app/views/hypothesis.py")
    assert_ok(again)
    assert next(m.value for m in again.markdown if m.value.startswith("**Settings of each editor"))  == shown
    assert list(again.dataframe[0].value["ρ (Spearman)"]) == list(table["ρ (Spearman)"])


def test_results_view_link_opens_the_same_folder():
    at = _open({"dir": "docs/results/world"}, "app/views/results.py")
    assert_ok(at)
    assert at.text_input(key="results_dir").value == "docs/results/world"
    assert dict(at.query_params)["dir"] == "docs/results/world"


def test_sequential_link_carries_typed_steps_and_their_settings():
    at = _open({}, "app/views/sequential.py")
    at.selectbox(key="seq_editor").set_value("ft-l").run()
    at.session_state["cfg:ft-l:steps"] = 4
    at.radio(key="req_source").set_value("Type a fact").run()
    at.text_input(key="typed_prompt").input("The capital of France is")
    at.text_input(key="typed_target").input("Rome")
    at.run()
    at.button(key="seq_apply").click().run()
    at.text_input(key="typed_target").input("Berlin")
    at.run()
    at.button(key="seq_apply").click().run()
    assert_ok(at)
    history = at.session_state["_seq_history"]
    qp = dict(at.query_params)
    from sss_core.record import unpack_records
    steps = unpack_records(qp["seqrec"])
    assert [(r.case.request.target_new, r.settings["steps"]) for r in steps] == [("Rome", 4), ("Berlin", 4)]
    again = _open(qp, "app/views/sequential.py")
    assert_ok(again)
    replayed = again.session_state["_seq_history"]
    assert [s.request.target_new for s in replayed] == ["Rome", "Berlin"]
    assert [s.metrics for s in replayed] == [s.metrics for s in history]
    assert [s.retention for s in replayed] == [s.retention for s in history]


@pytest.mark.slow
def test_edit_view_shows_world_locality_when_asked_and_its_link_replays_it(app):
    app.checkbox(key="world_locality").check().run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    run = app.session_state["_run"]
    w = run.world
    shown = next(m.value for m in app.markdown if m.value.startswith("**World locality"))
    assert shown.startswith(f"**World locality {w.world_locality:.3f}**: {w.n_damaged} of the {len(w.others)} other "
                            "facts of the world changed their top answer")
    record = RunRecord.from_link(dict(app.query_params)["rec"])
    assert record.analysis.world_locality is True
    again = _open(dict(app.query_params))
    assert_ok(again)
    assert again.session_state["_run"].world.world_locality == w.world_locality


def test_load_a_run_replays_an_export_and_shows_its_record_in_the_form(app, default_lm):
    import json

    from sss_core.analysis import analyse_edit
    from sss_core.types import EditCase, EditRequest, Probe

    # not a world fact: the form's typed fact then carries exactly these probes (a world fact would add the
    # world's, and the page would rightly mark the loaded run as made from other probes than the form's)
    case = EditCase(EditRequest("The favourite colour of Zorblat is", "green"),
                    (Probe("The capital of Spain is", "Madrid", "neighbour"),))
    exported = analyse_edit(default_lm, "ft-l", {"steps": 3, "layer": 1}, case, background=(), probes_from="typed")
    payload = json.dumps(exported.to_json_dict()).encode()
    app.file_uploader(key="load_run_file").set_value(("run.json", payload, "application/json")).run()
    app.button(key="load_run_go").click().run()
    assert_ok(app)
    run = app.session_state["_run"]
    assert run.record.digest() == exported.record.digest()
    assert run.result.metrics == exported.result.metrics
    assert app.selectbox(key="editor").value == "ft-l"
    assert (app.session_state["cfg:ft-l:steps"], app.session_state["cfg:ft-l:layer"]) == (3, 1)
    assert app.text_area(key="typed_neighbours").value == "The capital of Spain is"
    assert not [i.value for i in app.info if i.value.startswith("Earlier run")]  # the form is the run's


def test_compare_offers_a_trained_editor_only_its_checkpoints_c_and_says_so_for_a_link():
    at = _open({"a": "mend+sss", "ca": "0.5", "b": "ft-l", "run": "1"}, "app/views/compare.py")
    assert_ok(at)
    box = at.selectbox(key="cmp_c_a")
    assert box.options == ["0", "0.9"] and box.value == 0.9
    assert ("mend+sss is trained: its C is the C of its checkpoint, and its checkpoints have C = 0, 0.9; C = 0.5 has "
            "none, so C = 0.9 is used.") in [i.value for i in at.info]
    a, _ = at.session_state["_compare"]
    assert a.record.c == 0.9 and a.record.c_role == "checkpoint"
