"""What the app's pages say, read from the session (AppTest): each check reads the exact content of a
table cell, a caption, a figure's axis or a message, on real edits of the shipped model."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa

from app.figures import MISSING

from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok  # noqa: F401 (fixtures)


def test_probe_table_ticks_only_a_flip_to_the_new_target(app):
    """The default preset's paraphrase "the -> a" (P(new) near 0, score 0) is "off target", not ✓."""
    app.button(key="run_edit").click().run()
    assert_ok(app)
    table = app.dataframe[0].value
    new = app.session_state["_run"].case.request.target_new
    rows = {}
    for _, r in table.iterrows():
        before, after = (t.strip() for t in r["top-1 before → after"].split(" → "))
        assert r["answer old → new"].endswith(" → " + new) or r["group"] == "reversed relation"
        rows.setdefault(r["top-1"], []).append((r["group"], before, after, r["P(new) after"], r["score"]))
    # every tick is a flip whose top-1 after starts the new target
    assert rows["FLIPPED ✓"] and all(new.startswith(after) and before != after for _, before, after, _, _ in
                                     rows["FLIPPED ✓"])
    off = rows["FLIPPED off target"]
    assert [g for g, *_ in off] == ["paraphrase"]
    group, before, after, p_new, score = off[0]
    assert (before, after) == ("the", "a") and p_new < 1e-5 and score == 0.0
    assert all(g in ("distract-neighbour", "unrelated attribute") for g, *_ in rows["FLIPPED ✗ damage"])
    assert any("off target: such a probe flipped to another token" in c.value for c in app.caption)


def shown_cells(element) -> pd.DataFrame:
    """The cells of an st.dataframe as the grid draws them, as text: the Styler's display values, except a
    missing raw value, which the grid draws as the element's placeholder (Streamlit's "None" when unset)."""
    styler = element.proto.arrow_data.styler
    assert styler.display_values, "this table is not styled: its cells are drawn from the raw values"
    shown = pa.ipc.open_stream(styler.display_values).read_all().to_pandas()
    raw = element.value.reset_index(drop=True)
    placeholder = element.proto.placeholder if element.proto.HasField("placeholder") else "None"
    return shown.mask(raw.isna().to_numpy(), placeholder)


def _no_none(table: pd.DataFrame) -> None:
    cells = {str(v) for v in table.to_numpy().ravel()}
    assert not cells & {"None", "nan", "NaN", "<NA>"}, cells & {"None", "nan", "NaN", "<NA>"}


def test_missing_values_read_n_a_in_the_edit_and_compare_tables(app):
    app.button(key="run_edit").click().run()
    assert_ok(app)
    probes = shown_cells(app.dataframe[0])
    reversed_row = probes[probes["group"] == "reversed relation"].iloc[0]
    assert (reversed_row["P(old) before"], reversed_row["P(old) after"]) == (MISSING, MISSING)
    assert reversed_row["answer old → new"].startswith(MISSING + " → ")
    _no_none(probes)

    app.switch_page("app/views/compare.py").run()
    app.button(key="run_compare").click().run()
    assert_ok(app)
    tables = {tuple(d.value.columns[:3]): shown_cells(d) for d in app.dataframe}
    summary = tables[("run", "editor", "C")]
    assert list(summary["C"]) == [MISSING, "0.9"]  # ft-l has no C
    paired = next(t for cols, t in tables.items() if cols == ("group", "prompt", "old answer"))
    assert paired[paired["group"] == "reversed relation"].iloc[0]["old answer"] == MISSING
    for table in tables.values():
        _no_none(table)


def test_c_sweep_table_rounds_its_numbers(app):
    app.switch_page("app/views/sweep.py").run()
    app.button(key="run_sweep").click().run()
    assert_ok(app)
    table = shown_cells(app.dataframe[0])
    assert list(table["C"]) == ["0", "0.25", "0.5", "0.75", "0.9", "1"]
    for column in ("reliability", "generality", "locality"):
        assert all(re.fullmatch(r"[01]\.\d\d", v) for v in table[column]), table[column]
    assert all(re.fullmatch(r"\d\.\d\de[+-]\d\d", v) for v in table["λ_max after (new target)"])
    assert all(re.fullmatch(r"\d+\.\d\d", v) for v in table["seconds"])


def _hypothesis_run(app, editors: list[str], n: int):
    app.switch_page("app/views/hypothesis.py").run()
    app.multiselect(key="hyp_editors").set_value(editors).run()
    app.number_input(key="hyp_n").set_value(n).run()
    app.button(key="hyp_run").click().run()
    assert_ok(app)
    return app.session_state["_hyp_job"]


def _identical_pairs(job) -> tuple[int, int]:
    """Paired cases (ft-l, then its SSS variant, case by case) whose predictions and four scores are equal,
    counted from the job's records themselves."""
    def key(r):
        return ([p["post"] for p in r["probes"]],
                [r["metrics"].get(m) for m in ("reliability", "generality", "locality", "portability")])
    pairs = [(job.records[i], job.records[i + 1]) for i in range(0, len(job.records), 2)]
    return sum(key(a) == key(b) for a, b in pairs), len(pairs)


def test_hypothesis_says_when_ftl_and_ftl_sss_made_the_same_edits_and_why(app):
    from app.same_edits import FTL_REASON
    job = _hypothesis_run(app, ["ft-l", "ft-l+sss"], 30)
    assert _identical_pairs(job) == (30, 30)  # the default settings: every paired case the same
    notice = [i.value for i in app.info]
    assert ("ft-l+sss and ft-l made the same edits as far as any score can tell: all 30 paired cases have identical "
            "predictions after the edit and identical scores (their weight updates may still differ slightly), so "
            "every paired difference below is 0. " + FTL_REASON) in notice
    effects = next(d.value for d in app.dataframe if "mean difference" in d.value.columns)
    assert (effects["mean difference"] == 0).all() and (effects["CI low"] == 0).all()  # what the notice explains


def test_hypothesis_counts_the_paired_cases_the_loose_sum_preset_changed(app):
    job = _hypothesis_run(app, ["ft-l", "ft-l+sss-loose-sum"], 10)
    same, pairs = _identical_pairs(job)
    assert pairs == 10 and same < 10
    assert (f"ft-l+sss-loose-sum and ft-l: {same} of 10 paired cases have identical predictions after the edit "
            "and identical scores.") in [c.value for c in app.caption]
    assert not any("made the same edits" in i.value for i in app.info)


def test_c_sweep_says_which_c_changed_nothing_and_why(app):
    from app.same_edits import FTL_REASON
    app.switch_page("app/views/sweep.py").run()
    app.button(key="run_sweep").click().run()
    assert_ok(app)
    points = app.session_state["_sweep"].points
    scores = [tuple(p.metrics[m] for m in ("reliability", "generality", "locality", "portability")) for p in points]
    assert [p.c for p in points] == [0, 0.25, 0.5, 0.75, 0.9, 1.0]
    assert len(set(scores[:5])) == 1 and scores[5] != scores[0]  # measured: C = 0 .. 0.9 alike, C = 1 not
    lams = [p.lambda_max_after for p in points[:5]]
    r, g, loc, port = scores[0]
    expected = (f"At C = 0, 0.25, 0.5, 0.75 and 0.9 the edit scored the same: reliability {r:.2f}, generality "
                f"{g:.2f}, locality {loc:.2f}, portability {port:.2f}; λ_max after the edit ranged from "
                f"{min(lams):.3g} to {max(lams):.3g} there. Only at C = 1 did a score differ. " + FTL_REASON)
    assert [i.value for i in app.info] == [expected]


def test_an_error_names_a_pasted_prompt_without_repeating_it(app):
    from app.messages import SHOWN_QUOTE
    app.radio(key="req_source").set_value("Type a fact").run()
    app.text_input(key="typed_prompt").input("x" * 3000).run()
    app.button(key="run_edit").click().run()
    (error,) = [e.value for e in app.error]
    assert error.startswith("The edit failed: the subject 'France' does not occur in the prompt "
                            f"'{'x' * SHOWN_QUOTE}...' (3000 characters)"), error
    assert len(error) < 300 and app.text_input(key="typed_prompt").value == "x" * 3000  # the input is kept


def _typed(app, prompt: str, subject: str, target: str = "Rome") -> list[str]:
    app.radio(key="req_source").set_value("Type a fact").run()
    app.text_input(key="typed_prompt").input(prompt)
    app.text_input(key="typed_subject").input(subject)
    app.text_input(key="typed_target").input(target).run()
    assert_ok(app)
    return [i.value for i in app.info]


def test_a_fact_outside_the_shipped_models_world_gets_a_hint(app):
    from app.resources import preset_cases
    from sss_core.evaluation.presets import default_world
    subjects = len({f.subject for f in default_world().facts})
    examples = ", ".join(list(dict.fromkeys(c.request.subject for c in preset_cases()))[:4])
    hint = (f"“Eiffel Tower” is not in the built-in world: the shipped model was trained only on that world "
            f"({subjects} subjects, e.g. {examples}), so its answer to this prompt is a guess from the world's "
            "sentence patterns, not knowledge of the fact. Pick a world preset, type a fact about a world subject, "
            "or load another model in the Model box.")
    assert hint in _typed(app, "The Eiffel Tower is located in", "Eiffel Tower")
    app.button(key="run_edit").click().run()
    assert_ok(app)
    assert hint in [i.value for i in app.info]  # still beside the results, whose old answer is no knowledge
    # a world subject, in any case, or an alias of one: no hint
    for prompt, subject in (("The capital of France is", "France"), ("The capital of france is", "france"),
                            ("The capital of Holland is", "Holland")):
        assert not any("built-in world:" in i for i in _typed(app, prompt, subject)), subject
    # no subject typed: the prompt's words decide
    assert not any("built-in world" in i for i in _typed(app, "The capital of France is", ""))
    assert any(i.startswith("This prompt names no subject of the built-in world: ")
               for i in _typed(app, "The Eiffel Tower is located in", ""))


def test_no_world_hint_for_another_model(app, tmp_path):
    from transformers import AutoTokenizer

    from model_support import tiny_model
    from sss_core.models import DEFAULT_MODEL
    tok = AutoTokenizer.from_pretrained(DEFAULT_MODEL)
    lm = tiny_model("gpt2", tok)
    lm.model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    app.text_input(key="model_name").input(str(tmp_path)).run()
    assert_ok(app)
    assert not any("built-in world" in i for i in _typed(app, "The Eiffel Tower is located in", "Eiffel Tower"))


def test_the_json_export_carries_each_tokens_share_of_lambda_max(app, default_lm):
    import json

    import pytest

    from app.panels.edit import run_json
    from sss_core.sss import lambda_max_tokens
    app.button(key="run_edit").click().run()
    assert_ok(app)
    run = app.session_state["_run"]
    exported = json.loads(run_json(run))["lambda_max_tokens"]
    r = run.case.request
    expected = lambda_max_tokens(default_lm.model, default_lm.tok, r.prompt, r.target_new)  # the unedited model
    assert exported["before"]["tokens"] == list(expected.tokens) and exported["before"]["n_prompt"] == expected.n_prompt
    # the same computation, possibly with another torch thread count (the app's): equal to float noise
    assert exported["before"]["shares"] == pytest.approx(list(expected.shares()), abs=1e-6)
    assert exported["after"]["lambda_max"] == run.result.lambda_max_after or \
        abs(exported["after"]["lambda_max"] / run.result.lambda_max_after - 1) < 1e-4
    assert abs(sum(exported["after"]["shares"]) - 1) < 1e-9
