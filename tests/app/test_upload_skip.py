"""Uploading a data file with unusable parts (issue 24.7): refused whole by default, with a hint; with "Skip
unusable records" the usable records are kept and what was left out is counted and named on the page."""

from __future__ import annotations

from pathlib import Path

from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok, errors  # noqa: F401 (fixtures)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _upload(at, name: str):
    at.radio(key="req_source").set_value("Upload EasyEdit JSON").run()
    at.file_uploader[0].set_value((name, (FIXTURES / name).read_bytes(), "application/json")).run()
    return at


def test_upload_with_one_broken_record_is_refused_then_kept_without_it_when_asked(app):
    _upload(app, "zsre_one_bad_record.json")
    assert not app.exception
    assert errors(app) == ["Could not read zsre_one_bad_record.json: zsre_one_bad_record.json: record 1, field 'alt' "
                           "must be a non-empty string, got an empty string"]
    assert [i.value for i in app.info] == ["Tick **Skip unusable records** to keep the file's usable records; what "
                                           "is left out is then counted and named here."]
    app.checkbox(key="upload_skip_invalid").check().run()
    assert_ok(app)
    box = app.selectbox(key="upload_choice")
    assert box.label == "Record (2 in zsre_one_bad_record.json)"
    assert box.options == ["0: Which river does Velmora Bridge cross? -> Kessel (was Ostra)",
                           "1: Who is the sister of Dora Maren? -> Ilse Maren (was Vera Maren)"]
    assert [w.value for w in app.warning] == [
        "zsre_one_bad_record.json: kept 2 record(s); 1 record(s) skipped as unusable (record 1, field 'alt' must "
        "be a non-empty string, got an empty string)"]
    app.checkbox(key="upload_skip_invalid").uncheck().run()  # strict again: the file is read again and refused
    assert errors(app)[0].startswith("Could not read zsre_one_bad_record.json: ")


def test_upload_skipping_leaves_out_one_bad_probe_and_keeps_its_record(app):
    app.radio(key="req_source").set_value("Upload EasyEdit JSON").run()
    app.checkbox(key="upload_skip_invalid").check().run()
    _upload(app, "knowedit_one_bad_probe.json")
    assert_ok(app)
    assert app.selectbox(key="upload_choice").label == "Record (2 in knowedit_one_bad_probe.json)"
    assert [w.value for w in app.warning] == [
        "knowedit_one_bad_probe.json: kept 2 record(s); 1 unusable probe(s) left out of kept records "
        "(record 0: 'locality.Forgetfulness[1]')"]
    held = app.session_state["_uploaded"][1]
    assert [p.answer for p in held[0].group("neighbour")] == ["Bolivia", "Puno"]
