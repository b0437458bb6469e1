"""The run record: one description of a run that exports carry and ``edit --from`` replays; C made honest."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sss_core.analysis import analyse_edit, run_record
from sss_core.errors import RequestError
from sss_core.evaluation.presets import case_for_request
from sss_core.record import AnalysisOptions, ModelRef, RunRecord, load_record, make_record
from sss_core.types import EditCase, EditRequest, Probe

ROOT = Path(__file__).resolve().parent.parent
FRANCE = EditRequest("The capital of France is", "Rome", subject="France")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sss_core", *args], cwd=ROOT, capture_output=True, check=False,
                          text=True, timeout=300)


def _typed_case() -> EditCase:
    return EditCase(FRANCE, (Probe("France's capital city is", "Rome", "paraphrase"),
                             Probe("The capital of Spain is", "Madrid", "neighbour")))


def test_record_round_trips_through_dict_json_and_link():
    record = make_record("ft-l+sss", {"steps": 3, "layer": 2}, _typed_case(),
                         analysis=AnalysisOptions(background=4, k=3, metric="euclidean"), seed=7, probes_from="typed",
                         typed_probes=2)
    again = RunRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record and RunRecord.from_link(record.to_link()) == record
    assert record.to_dict()["settings"]["steps"] == 3 and record.to_dict()["settings"]["lr"] == 5e-3  # the full config
    assert record.overrides() == {"steps": 3, "layer": 2}  # C = 0.9 is ft-l+sss's own default
    assert record.c == 0.9 and record.c_role == "loss"
    assert set(record.versions) == {"python", "sss_lab", "torch", "transformers"}
    assert shlex.split(record.command()) == [
        "sss-lab", "edit", "--editor", "ft-l+sss", "--prompt", "The capital of France is", "--target", "Rome",
        "--subject", "France", "--paraphrase", "France's capital city is", "--neighbour", "The capital of Spain is",
        "--set", "layer=2", "--set", "steps=3", "--k", "3", "--metric", "euclidean", "--background", "4"]


def test_digest_changes_with_what_changes_the_result_and_only_with_it():
    base = make_record("ft-l", {}, _typed_case())
    assert make_record("ft-l", {}, _typed_case()).digest() == base.digest()
    renamed = RunRecord(base.editor, base.settings, base.case, ModelRef("another-name"), base.analysis)
    assert renamed.digest() == base.digest()  # the same weights under another name
    changed_probe = EditCase(FRANCE, (Probe("France's capital city is", "Rome", "paraphrase"),))
    for other in (make_record("ft-l", {"steps": 3}, _typed_case()), make_record("ft-l", {}, changed_probe),
                  make_record("ft-l", {}, _typed_case(), seed=1),
                  make_record("ft-l", {}, _typed_case(), model=ModelRef(fingerprint="0" * 16))):
        assert other.digest() != base.digest()


def test_not_a_record_and_newer_versions_are_refused():
    with pytest.raises(RequestError, match=r"^this is not a run record"):
        load_record('{"metrics": {}}')
    d = make_record("ft-l", {}, _typed_case()).to_dict()
    with pytest.raises(RequestError, match=r"^the run record has version 99, newer than this sss-lab reads \(1\)"):
        RunRecord.from_dict({**d, "version": 99})
    with pytest.raises(RequestError, match=r"^the link's run record is damaged"):
        RunRecord.from_link("not-a-record")


def test_run_record_replays_an_analysed_edit_exactly(default_lm):
    run = analyse_edit(default_lm, "ft-l+sss", {"steps": 4}, case_for_request(FRANCE, lm=default_lm),
                       with_embeddings=False)
    again = run_record(default_lm, RunRecord.from_dict(json.loads(json.dumps(run.to_json_dict()["record"]))))
    assert again.result.metrics == run.result.metrics
    assert again.result.lambda_max_after == run.result.lambda_max_after
    assert [r.p_new_after for r in again.rows] == [r.p_new_after for r in run.rows]


def test_a_record_of_another_model_is_refused(default_lm):
    record = make_record("ft-l", {}, _typed_case(), model=ModelRef("gpt2", "0123456789abcdef", "float32"))
    with pytest.raises(RequestError, match=r"^this run was made on gpt2 \(weights 0123456789abcdef, float32\); "
                                           r"the model loaded is sss_core/assets/default-model"):
        run_record(default_lm, record)


def test_edit_json_replayed_with_from_gives_the_same_numbers(tmp_path):
    res = cli("edit", "--editor", "ft-l+sss", "--prompt", "The capital of France is", "--subject", "France",
              "--target", "Rome", "--neighbour", "The capital of Spain is", "--set", "steps=3", "--set", "layer=2",
              "--json")
    assert res.returncode == 0, res.stderr
    first = json.loads(res.stdout)
    record = first["record"]
    assert record["settings"]["layer"] == 2 and record["settings"]["steps"] == 3 and record["c"] == 0.9
    assert ["neighbour", "The capital of Spain is"] == record["case"]["probes"][-1][:2]  # typed probes travel
    assert first["command"]["replay"] == "sss-lab edit --from FILE"
    assert "--set layer=2 --set steps=3" in first["command"]["equivalent"]
    (tmp_path / "run.json").write_text(res.stdout)
    res = cli("edit", "--from", str(tmp_path / "run.json"), "--json")
    assert res.returncode == 0, res.stderr
    second = json.loads(res.stdout)
    for key in ("metrics", "lambda_max_before", "lambda_max_after", "probes", "post", "delta_norms"):
        assert second[key] == first[key], key
    assert second["record"]["case"] == record["case"] and second["record"]["settings"] == record["settings"]


def test_from_refuses_request_options():
    res = cli("edit", "--from", "run.json", "--editor", "rome", "--C", "0.5")
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: --from replays the run as recorded; leave out --editor, --C "
                                  "(or drop --from to run a new edit)")


def test_trained_editor_at_a_c_without_checkpoint_exits_2_naming_the_checkpoints():
    res = cli("edit", "--editor", "mend+sss", "--C", "0.5", "--prompt", "The capital of France is",
              "--subject", "France", "--target", "Rome", "--json")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines()[-1] == (
        "error: mend+sss has no checkpoint trained at C = 0.5: sss_core/assets/editors/mend-sss was trained at "
        "C = 0.9; shipped: C = 0 (sss_core/assets/editors/mend), C = 0.9 (sss_core/assets/editors/mend-sss). Train "
        "one with: sss-lab train mend --sss-c 0.5 --data world --out DIR, then pass checkpoint=DIR "
        "(--set checkpoint=DIR)")


def test_trained_editor_json_says_its_c_is_the_checkpoints(default_lm):
    run = analyse_edit(default_lm, "serac", {"sss_c": 0.9}, _typed_case(), with_embeddings=False)
    out = run.to_json_dict()
    assert out["config"]["c"] == 0.9
    assert out["config"]["c_means"] == ("C = 0.9: C the editor's checkpoint was trained with; the edit itself has "
                                        "no SSS term")
    assert run.record.command().endswith("--set sss_c=0.9") is False  # a trained editor's C follows its checkpoint


def _record_in_page(page: str) -> RunRecord:
    start = page.index('<script type="application/json" id="sss-run-record">') + len(
        '<script type="application/json" id="sss-run-record">')
    return load_record(page[start:page.index("</script>", start)].replace("<\\/", "</"))


def test_html_exports_and_the_inspect_page_carry_the_record_and_its_command(default_lm, tmp_path):
    import plotly.graph_objects as go

    from app.figures import figure_html
    from sss_core.inspect_page import inspect_page

    run = analyse_edit(default_lm, "ft-l+sss", {"steps": 3}, _typed_case(), background=(), probes_from="typed",
                       typed_probes=2)
    for page in (figure_html(go.Figure(), "SSS Lab: a figure", [run]), inspect_page(run)):
        assert _record_in_page(page).digest() == run.record.digest()
        assert "sss-lab edit --from run.json" in page
        assert "--set steps=3" in page and "--neighbour &#x27;The capital of Spain is&#x27;" in page
    assert "sss-run-record" not in figure_html(go.Figure(), "no run")


@pytest.mark.slow
def test_edit_json_carries_world_locality_and_its_replay_gives_the_same(tmp_path):
    res = cli("edit", "--editor", "ft-l", "--prompt", "The capital of France is", "--subject", "France",
              "--target", "Rome", "--world-locality", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    world = out["world_locality"]
    assert world["facts"] == 2116 and world["should_change"] == 1 and world["others"] == 2115
    assert world["world_locality"] == pytest.approx(1 - world["damaged"] / 2115)
    assert len(world["damaged_facts"]) == min(20, world["damaged"])
    assert out["record"]["analysis"]["world_locality"] is True and "--world-locality" in out["command"]["equivalent"]
    (tmp_path / "run.json").write_text(res.stdout)
    again = json.loads(cli("edit", "--from", str(tmp_path / "run.json"), "--json").stdout)
    assert again["world_locality"]["world_locality"] == world["world_locality"]
    assert again["world_locality"]["damaged_facts"] == world["damaged_facts"]


def test_the_equivalent_command_lists_only_typed_probes_and_says_when_it_cannot_make_the_run(default_lm):
    """A typed world fact: the flags give the world's probes plus the typed ones, so they list only the typed
    ones (listing the world's too would add them twice); a preset's or a file's probes cannot travel as flags."""
    from sss_core.evaluation.presets import presets

    typed = case_for_request(FRANCE, ["France's capital city is"], ["The capital of Spain is"], default_lm)
    record = make_record("ft-l", {}, typed, probes_from="typed", typed_probes=2)
    words = shlex.split(record.command())
    assert words.count("--paraphrase") == 1 and words.count("--neighbour") == 1 and record.command_note() is None
    assert "France's capital city is" in words and "The capital of Spain is" in words
    preset = presets("test", 1)[0]
    from_file = make_record("ft-l", {}, preset, probes_from="record")
    assert "--paraphrase" not in from_file.command() and "--neighbour" not in from_file.command()
    assert from_file.command_note().startswith(f"the {len(preset.probes)} probes of this run came with a preset or a "
                                               "data file: the flags give the built-in world's probes")
    assert from_file.digest() == make_record("ft-l", {}, preset, probes_from="typed").digest()  # provenance aside
