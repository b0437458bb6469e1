"""The FT-L+SSS preset measured in docs/editors.md ("Where the SSS term changes FT-L's edits").

The preset is a registry entry whose settings are those of one row of the committed table
(docs/results/sss-settings/table.csv, written by tools/sss_settings.py). These tests check that
the entry runs exactly that row's settings with the table's C, and that on world edits its edit is
not plain FT-L's under the same settings, as the table found. No figure measured on the default
model is hard-coded here: the model is retrained from time to time.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from sss_core.editors import EDITORS, FTLConfig, editor_config, make_editor
from sss_core.evaluation.datasets import world_split_cases
from sss_core.evaluation.metrics import evaluate_edit

PRESET = "ft-l+sss-loose-sum"  # the registry entry
ROW = "loose-sum"  # its row of the table
C = 0.9  # every row of the table runs FT-L+SSS at C = 0.9
TABLE = Path(__file__).resolve().parents[2] / "docs" / "results" / "sss-settings" / "table.csv"


def _row_settings() -> dict:
    """The ``--set`` values of the preset's row, as the committed table lists them."""
    table = pd.read_csv(TABLE)
    row = table[table["row"] == ROW]
    assert len(row) == 1, f"{TABLE} has no single row {ROW!r}: {list(table['row'])}"
    return json.loads(row["settings"].iloc[0])


def test_the_preset_runs_the_settings_of_its_table_row():
    spec = EDITORS[PRESET]
    assert spec.factory is EDITORS["ft-l"].factory and spec.config_cls is FTLConfig
    assert spec.uses_sss and spec.c_field == "sss_c"
    assert editor_config(PRESET) == FTLConfig(**{**_row_settings(), "sss_c": C})
    # plain FT-L under the same settings is the row's other editor; only C differs from the preset
    plain = editor_config("ft-l", **_row_settings())
    assert dataclasses.replace(editor_config(PRESET), sss_c=0.0) == plain


def test_the_presets_row_is_where_sss_changed_the_most_predictions_and_lowered_lambda_max_most():
    """The preset is the measured setting with the largest paired effect on the edits (docs/editors.md)."""
    table = pd.read_csv(TABLE).set_index("row")
    assert table["changed_pct"].idxmax() == ROW
    ratio = table["lambda_after_sss"] / table["lambda_after_ftl"]
    assert ratio.idxmin() == ROW and ratio[ROW] < 1


def test_the_preset_is_paired_with_ftl_in_bench_reports():
    from sss_core.evaluation.report import sss_pairs

    assert ("ft-l", PRESET) in sss_pairs(["ft-l", PRESET])


def test_the_presets_edit_differs_from_plain_ftl_on_a_world_edit(default_lm):
    """The table: under the row's settings, SSS changed predictions in a sizeable share of cases.

    So among the first world test edits (seed 0, as the table's bench) there is one whose
    teacher-forced predictions after the preset's edit are not those after plain FT-L's with the
    same settings; on every edit tried, the two weight updates differ.
    """
    model, tok = default_lm.model, default_lm.tok
    plain, preset = make_editor("ft-l", **_row_settings()), make_editor(PRESET)
    for case in world_split_cases("test", seed=0)[:20]:
        edit_a, edit_b = plain.edit(model, tok, [case.request]), preset.edit(model, tok, [case.request])
        assert edit_a.new.keys() == edit_b.new.keys()
        assert any(not torch.equal(edit_a.new[k], edit_b.new[k]) for k in edit_a.new)
        a = evaluate_edit(model, tok, case, edit_a, with_lambda=False)
        b = evaluate_edit(model, tok, case, edit_b, with_lambda=False)
        if [p.post_tokens for p in a.probes] != [p.post_tokens for p in b.probes]:
            return
    pytest.fail("the preset made the same predictions as plain FT-L on each of the first 20 world test edits")
