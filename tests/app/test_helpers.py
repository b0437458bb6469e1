"""The app's pure helpers: uploads (via the core loaders), report reading, figures (no model, no Streamlit run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from app import figures
from app.reports import read_report, summary_table
from app.uploads import parse_upload
from real_data import anchor_file
from sss_core.errors import DataError



def test_parse_flat_zsre_and_nested_records():
    flat = {"case_id": 2, "prompt": "Toko Yasuda, the", "target_new": "piano", "subject": "Toko Yasuda",
            "ground_truth": "guitar", "rephrase_prompt": "Toko Yasuda is incredible at",
            "locality_prompt": "John Lennon performs on the", "locality_ground_truth": "guitar"}
    zsre = {"subject": "UniFirst", "src": "What is the product made by UniFirst?", "pred": "uniform",
            "rephrase": "What will be the product of UniFirst?", "alt": "unmanned aircraft", "answers": ["uniform"],
            "loc": "nq question: who wrote hamlet", "loc_ans": "Shakespeare",
            "portability": {"New Question": "Who makes unmanned aircraft?", "New Answer": "UniFirst"}}
    nested = {"case_id": 9, "requested_rewrite": {"prompt": "{} passed away in", "subject": "May Wright Sewall",
                                                   "target_new": {"str": "Birmingham"}, "target_true": {"str": "Indianapolis"}},
              "paraphrase_prompts": ["May Wright Sewall succumbed at"], "neighborhood_prompts": ["Jake Weber died at"],
              "alternative_subject": "M. W. Sewall"}
    cases = [parse_upload(json.dumps(rec).encode())[0] for rec in (flat, zsre, nested)]
    assert [c.request.target_new for c in cases] == ["piano", "unmanned aircraft", "Birmingham"]
    assert cases[0].request.ground_truth == "guitar" and {p.group for p in cases[0].probes} == {"paraphrase", "neighbour"}
    assert {p.group for p in cases[1].probes} == {"paraphrase", "neighbour", "one_hop"}
    assert cases[2].request.prompt == "May Wright Sewall passed away in"
    assert {"paraphrase", "pre_neighbour", "subject_replace"} <= {p.group for p in cases[2].probes}


def test_parse_world_records_round_trip():
    from sss_core.evaluation.presets import presets
    from sss_core.world.records import to_record
    case = presets("test", 1)[0]
    (parsed,) = parse_upload(json.dumps(to_record(case)).encode())
    assert parsed.request == case.request
    assert sorted((p.group, p.prompt) for p in parsed.probes) == sorted((p.group, p.prompt) for p in case.probes)


def test_json_lines_and_errors():
    lines = b'{"prompt": "a b", "target_new": "c"}\n{"prompt": "d e", "target_new": "f"}\n'
    assert len(parse_upload(lines)) == 2
    with pytest.raises(DataError, match="not JSON"):
        parse_upload(b"{nope")
    with pytest.raises(DataError, match="record 1, field"):
        parse_upload(b'[{"prompt": "a", "target_new": "b"}, {"prompt": "x"}]')
    with pytest.raises(DataError, match="has no records"):
        parse_upload(b"[]")
    with pytest.raises(DataError, match="JSON int"):
        parse_upload(b"[3]")
    with pytest.raises(DataError, match="MB"):
        parse_upload(b" " * (51 * 2**20))


@pytest.mark.parametrize("name", ["knowledgespread/counterfact-train.json", "knowledgespread/zsre_mend_train-1k.json",
                                  "instructed_portability/counterfact_subject_replace.json"])
@pytest.mark.real_data
def test_real_easyedit_files(name):
    path = anchor_file(name)
    cases = parse_upload(path.read_bytes(), path.name, max_records=50)
    assert len(cases) == 50 and all(c.request.prompt and c.request.target_new for c in cases)


def test_read_report_and_summary(tmp_path):
    rows = [{"editor": "ft-l", "metrics": {"reliability": 1.0, "locality": 0.8}},
            {"editor": "ft-l", "metrics": {"reliability": 0.5, "locality": 1.0}}]
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken")
    (tmp_path / "report.md").write_text("# Report")
    (tmp_path / "notes.txt").write_text("ignored")
    rep = read_report(tmp_path)
    assert list(rep.markdown) == ["report.md"] and len(rep.results["results.jsonl"]) == 2
    assert rep.problems == ["results.jsonl: skipped 1 unreadable line(s)"]
    summary = summary_table(rep.results["results.jsonl"])
    assert summary["metrics.reliability"].tolist() == [0.75]
    with pytest.raises(FileNotFoundError):
        read_report(tmp_path / "nope")


def test_projection_figure_maps_points_back_to_sentences():
    before = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    after = before + [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    fig = figures.projection_figure(before, after, ["rewrite", "background", "neighbour"], ["a", "b", "c"])
    assert isinstance(fig, go.Figure)
    ids = sorted(i for t in fig.data for i in (t.customdata if t.customdata is not None else []))
    assert ids == [0, 0, 1, 1, 2, 2]  # each sentence once before and once after
    assert len(fig.layout.annotations) == 2  # the unmoved sentence gets no arrow
    assert fig.data[0].meta["group"] == "background"  # background drawn first, under the rest
    with pytest.raises(ValueError):
        figures.projection_figure(before, after[:2], ["a"] * 3, ["a"] * 3)


def test_other_figures_and_html():
    figs = [figures.delta_norm_figure({"transformer.h.0.mlp.c_proj.weight": 0.1}),
            figures.probability_figure(["p"], [0.1], [0.9]),
            figures.metrics_comparison_figure({"A": {"reliability": 1.0}, "B": {"reliability": 0.5}}),
            figures.sweep_figure([0.0, 0.9], {"reliability": [1.0, 0.9]}, [0.1, 0.05], 0.2),
            figures.sequential_figure([1, 2], {"locality": [1.0, 0.9]})]
    assert all(isinstance(f, go.Figure) for f in figs)
    page = figures.figure_html(figs[0])
    assert page.lstrip().lower().startswith("<!doctype html>") and "plotly" in page.lower() and len(page) > 1_000_000  # plotly.js inlined


def test_a_value_that_rounds_to_zero_is_shown_without_a_sign():
    from app.panels.common import signed_zero_free
    assert signed_zero_free(-3e-7, "+.4f") == "+0.0000" and signed_zero_free(2e-7, "+.4f") == "+0.0000"
    assert signed_zero_free(-0.00012, "+.4f") == "-0.0001" and signed_zero_free(-4e-7, ".4f") == "0.0000"
    assert signed_zero_free(-1e-7, ".3g") == "-1e-07" and signed_zero_free("text", "s") == "text"
