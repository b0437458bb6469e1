"""Damage against distance (issue 26.3): hand-built edits whose bins are counted by hand, then a real
run of the ``damage-distance`` command on the shipped model with 2 edits, checked against world_locality."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from model_support import assert_bit_identical, state_copy
from sss_core.cli import main
from sss_core.editors import make_editor
from sss_core.evaluation.damage_distance import (EditDamage, FactSpace, bin_of, damage_curve, damage_distance,
                                                 distances_to, edit_damage, paired_difference, quantile_edges, trend)
from sss_core.evaluation.presets import default_world, presets
from sss_core.evaluation.runners import case_seed
from sss_core.evaluation.world_locality import FactChange, WorldLocality, world_locality


def damage(editor: str, case_id: str, distance, changed, drop=None) -> EditDamage:
    distance = np.asarray(distance, float)
    drop = np.zeros(len(distance)) if drop is None else np.asarray(drop, float)
    return EditDamage(editor, case_id, np.arange(len(distance)), distance, np.asarray(changed, bool), drop)


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval, written out (not scipy's), to check the one-edit intervals."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_one_edit_two_bins_counted_by_hand():
    # distances 1..10; the top answer changed at 1, 2, 3 and 6; P(old answer) dropped 0.5 at 1, 0.1 at 7
    d = damage("ft-l", "c1", np.arange(1, 11), [1, 1, 1, 0, 0, 1, 0, 0, 0, 0],
               [0.5, 0, 0, 0, 0, 0, 0.1, 0, 0, 0])
    edges = quantile_edges([d], 2)
    assert edges.tolist() == [1.0, 5.5, 10.0]
    assert bin_of(d.distance, edges).tolist() == [0] * 5 + [1] * 5
    near, far = damage_curve([d], edges, n_boot=500)
    assert (near.facts, near.changed, near.share_changed, near.edits) == (5, 3, 0.6, 1)
    assert (far.facts, far.changed, far.share_changed) == (5, 1, 0.2)
    assert near.mean_drop == pytest.approx(0.1) and far.mean_drop == pytest.approx(0.02)
    assert near.median_distance == 3.0 and far.median_distance == 8.0
    assert (near.share_lo, near.share_hi) == pytest.approx(wilson(3, 5))
    assert (far.share_lo, far.share_hi) == pytest.approx(wilson(1, 5))
    # the drop's interval resamples the bin's 5 facts: one holds 0.5, so [0, 0.3] at most
    assert 0.0 <= near.drop_lo <= near.mean_drop <= near.drop_hi <= 0.3 + 1e-12
    assert "Wilson" in near.interval


def test_bin_edges_belong_to_the_upper_bin_and_the_last_bin_is_closed():
    edges = np.array([0.0, 2.0, 4.0])
    assert bin_of(np.array([0.0, 1.9, 2.0, 3.9, 4.0, 9.0, -1.0]), edges).tolist() == [0, 0, 1, 1, 1, 1, 0]


def test_many_edits_pooled_bins_and_cluster_bootstrap():
    # three edits of four facts each at distances 1..4: pooled quantile edges (3 bins) at 1, 2, 3, 4
    a = [damage("ft-l", "c1", [1, 2, 3, 4], [1, 1, 0, 0]),
         damage("ft-l", "c2", [1, 2, 3, 4], [1, 0, 0, 0]),
         damage("ft-l", "c3", [1, 2, 3, 4], [1, 0, 1, 0])]
    edges = quantile_edges(a, 3)
    assert edges.tolist() == [1.0, 2.0, 3.0, 4.0]
    bins = damage_curve(a, edges, n_boot=500)
    # bin 0 holds distance 1 (3 facts, all changed); bin 1 distance 2 (3 facts, 1 changed); bin 2 distances 3 and 4
    assert [(b.facts, b.changed, b.edits) for b in bins] == [(3, 3, 3), (3, 1, 3), (6, 1, 3)]
    assert bins[0].share_changed == 1.0 and (bins[0].share_lo, bins[0].share_hi) == (1.0, 1.0)  # every edit alike
    assert bins[1].share_changed == pytest.approx(1 / 3)
    # resampling 3 edits whose bin-1 shares are 1, 0, 0: a resample's share is 0, 1/3, 2/3 or 1
    assert bins[1].share_lo == 0.0 and bins[1].share_hi in (2 / 3, 1.0)
    assert "cluster bootstrap over 3 edits" in bins[1].interval


def test_paired_difference_of_sss_over_the_same_edits():
    base = [damage("ft-l", f"c{i}", [1, 2, 3, 4], [1, 1, 0, 0]) for i in range(8)]
    # with SSS: the nearest fact keeps its answer in edits 0-5, not in 6-7; the far half unchanged
    sss = [damage("ft-l+sss", f"c{i}", [1, 2, 3, 4], [i >= 6, 1, 0, 0]) for i in range(8)]
    edges = quantile_edges(base, 2)  # [1, 2.5, 4]: near = distances 1, 2; far = 3, 4
    rows = paired_difference(base, sss, edges, n_boot=2000)
    share = [r for r in rows if r.measure == "top_changed"]
    assert [(r.index, r.facts) for r in share] == [(0, 16), (1, 16)]
    assert share[0].difference == pytest.approx(-6 / 16)  # 6 fewer changed of 16 near facts
    assert share[0].lo < share[0].difference < share[0].hi < 0 and share[0].p < 0.05
    assert share[1].difference == 0.0 and math.isnan(share[1].p)  # no spread: no interval, no p
    with pytest.raises(ValueError, match="share no edits"):
        paired_difference(base, [damage("ft-l+sss", "other", [1, 2, 3, 4], [0, 0, 0, 0])], edges)


def test_trend_sign_and_the_whole_table():
    near_damaged = [damage("ft-l", f"c{i}", np.arange(1, 21) + i, np.arange(20) < 5 + i % 3) for i in range(6)]
    (changed, drop) = trend(near_damaged, n_boot=200)
    assert changed.rho < -0.6 and changed.clusters == 6 and changed.points == 120
    assert math.isnan(drop.rho)  # every drop is 0: no correlation
    result = damage_distance({"ft-l": near_damaged,
                              "ft-l+sss": [damage("ft-l+sss", d.case_id, d.distance, d.changed) for d in near_damaged]},
                             bins=4, n_boot=200)
    data = result.as_dict()
    assert len(data["edges"]) == 5 and set(data["curves"]) == {"ft-l", "ft-l+sss"}
    assert data["trend_tests"] == 2  # the two top_changed rows with a p; the NaN drops are not tests
    assert all(r["difference"] == 0 for r in data["differences"])


def test_distances_are_euclidean_or_one_minus_cosine():
    points = np.array([[3.0, 4.0], [0.0, 1.0], [-2.0, 0.0]])
    query = np.array([0.0, 2.0])
    assert distances_to(points, query).tolist() == pytest.approx([math.hypot(3, 2), 1.0, math.hypot(2, 2)])
    assert distances_to(points, query, "cosine").tolist() == pytest.approx([1 - 0.8, 0.0, 1.0])


def test_edit_damage_leaves_out_the_edited_fact():
    def change(changed, should, pb, pa):
        return FactChange("s", "r", "p", "o", "a", "b", pb, pa, changed, should)

    wl = WorldLocality((change(True, True, 0.9, 0.0), change(True, False, 0.8, 0.3), change(False, False, 0.5, 0.6)),
                       0.0)
    d = edit_damage(wl, np.array([0.0, 2.0, 5.0]), "rome", "c")
    assert d.fact_index.tolist() == [1, 2] and d.changed.tolist() == [True, False]
    assert d.drop.tolist() == pytest.approx([0.5, -0.1]) and d.distance.tolist() == [2.0, 5.0]


@pytest.mark.slow
def test_command_on_the_shipped_model_agrees_with_world_locality(default_lm, tmp_path):
    """Two FT-L edits through the command; their facts and changes equal world_locality's for the same edits."""
    saved = state_copy(default_lm.model)
    out = tmp_path / "dd"
    torch.set_num_threads(1)
    assert main(["damage-distance", "--editors", "ft-l", "--n", "2", "--bins", "4", "--n-boot", "200",
                 "--out", str(out), "--plotly-js", "inline"]) == 0
    assert_bit_identical(default_lm.model, saved)
    facts = default_world().facts
    cases = presets("test", 2)
    expected = []
    for case in cases:
        torch.manual_seed(case_seed(0, case.request.case_id))
        edit = make_editor("ft-l").edit(default_lm.model, default_lm.tok, [case.request])
        expected.append(world_locality(default_lm.model, default_lm.tok, facts, edit, case.request,
                                       relation=case.relation))
    bins = pd.read_csv(out / "bins.csv")
    assert len(bins) == 4
    assert bins["facts"].sum() == sum(len(wl.others) for wl in expected)
    assert bins["changed"].sum() == sum(wl.n_damaged for wl in expected)
    readings = pd.read_csv(out / "readings-ft-l.csv.gz", dtype={"case_id": str}, float_precision="round_trip")
    for case, wl in zip(cases, expected):
        rows = readings[readings.case_id == case.request.case_id]
        damaged = {i for i, f in enumerate(wl.facts) if f.changed and not f.should_change}
        assert set(rows.fact[rows.changed == 1]) == damaged
    # the distances are the unedited model's, measured alone, as FactSpace measures them
    space = FactSpace(default_lm.model, default_lm.tok, facts, "mean", "euclidean")
    first = readings[readings.case_id == cases[0].request.case_id]
    assert first.distance.to_numpy() == pytest.approx(space.distances(cases[0].request.prompt)[first.fact], abs=1e-5)
    data = json.loads((out / "damage_distance.json").read_text())
    assert data["settings"]["pooling"] == "mean" and data["curves"]["ft-l"][0]["edits"] == 2
    html = (out / "damage_distance.html").read_text()
    assert "share of facts whose top answer changed" in html and "mean drop in P(old answer)" in html
    # --resume reads the stored readings back (no edit) and makes the same tables
    (out / "bins.csv").unlink()
    assert main(["damage-distance", "--editors", "ft-l", "--n", "2", "--bins", "4", "--n-boot", "200",
                 "--out", str(out), "--plotly-js", "inline", "--resume"]) == 0
    assert pd.read_csv(out / "bins.csv").equals(bins)
    # --damage-from: the same damage, the distances measured again with another pooling and metric
    again_dir = tmp_path / "dd-last-cosine"
    assert main(["damage-distance", "--editors", "ft-l", "--n", "2", "--bins", "4", "--n-boot", "200", "--out",
                 str(again_dir), "--plotly-js", "inline", "--damage-from", str(out), "--pooling", "last",
                 "--metric", "cosine"]) == 0
    again = pd.read_csv(again_dir / "readings-ft-l.csv.gz", dtype={"case_id": str}, float_precision="round_trip")
    kept = ["case_id", "fact", "changed", "drop"]
    assert again[kept].equals(readings[kept])
    cosine = FactSpace(default_lm.model, default_lm.tok, facts, "last", "cosine")
    first = again[again.case_id == cases[0].request.case_id]
    assert first.distance.to_numpy() == pytest.approx(cosine.distances(cases[0].request.prompt)[first.fact], abs=1e-6)
    assert first.distance.max() <= 2.0  # 1 - cos


def test_command_refuses_a_folder_run_with_other_settings(tmp_path, capsys):
    (tmp_path / "run.json").write_text(json.dumps({"model": None, "split": "test", "n": 3, "pooling": "mean",
                                                   "metric": "euclidean", "layer": -1, "seed": 0, "settings": {}}))
    with pytest.raises(SystemExit) as exc:
        main(["damage-distance", "--editors", "ft-l", "--n", "2", "--out", str(tmp_path), "--resume"])
    assert exc.value.code == 2
    assert "was run with other settings (n)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["damage-distance", "--editors", "ft-l", "--n", "3", "--out", str(tmp_path)])
    assert "pass --resume" in capsys.readouterr().err


def test_markdown_tables_give_each_editors_bins_and_the_number_of_tests():
    from sss_core.cli.damage_distance import markdown_tables

    one = {"ft-l": [damage("ft-l", "c1", np.arange(1, 11), [1, 1, 1, 0, 0, 1, 0, 0, 0, 0])]}
    text = markdown_tables(damage_distance(one, bins=2, n_boot=200).as_dict())
    lo, hi = wilson(3, 5)
    assert "| editor | bin 1: 1–5.5 | bin 2: 5.5–10 |" in text
    assert f"| ft-l | 60.00 [{100 * lo:.2f}, {100 * hi:.2f}] | 20.00 [" in text
    assert "facts per bin and editor: 5, 5" in text
    assert "Benjamini-Hochberg over the table's 1 tests" in text  # top_changed has a p; the all-zero drops none
