"""sss_core.analysis: the analysis of one edit that the app shows, and C found through the editor registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sss_core.analysis import EmbeddingSet, analyse_edit, c_field, neighbour_table, sweep_c
from sss_core.editors import EDITORS
from sss_core.errors import RequestError
from sss_core.evaluation.presets import presets


def test_neighbour_table_of_a_point():
    emb = EmbeddingSet(("a", "b", "c"), ("rewrite", "neighbour", "background"),
                       np.array([[0.0, 0], [1, 0], [5, 0]]), np.array([[4.0, 0], [1, 0], [5, 0]]),
                       ("x",) * 3, ("y",) * 3, "last")
    (row,) = neighbour_table(emb, 0, k=1)
    assert (row["before"], row["kept"], row["after"], row["new"]) == ("b", "no", "c", "yes")
    assert row["distance before"] == 1.0 and row["distance after"] == 1.0


def test_neighbour_table_honours_the_distance():
    """Cosine and euclidean disagree here: b is nearer to a by angle, c by length."""
    emb = EmbeddingSet(("a", "b", "c"), ("rewrite", "neighbour", "background"),
                       np.array([[1.0, 0], [10, 1], [0.6, 0.8]]), np.array([[1.0, 0], [10, 1], [0.6, 0.8]]),
                       ("x",) * 3, ("y",) * 3, "last")
    (euclid,) = neighbour_table(emb, 0, k=1)
    (cosine,) = neighbour_table(emb, 0, k=1, metric="cosine")
    assert euclid["before"] == "c" and euclid["distance before"] == pytest.approx(0.8 ** 0.5, abs=1e-4)
    assert cosine["before"] == "b" and cosine["distance before"] == pytest.approx(1 - 10 / 101 ** 0.5, abs=1e-4)
    with pytest.raises(ValueError, match="metric must be"):
        neighbour_table(emb, 0, k=1, metric="manhattan")


@pytest.mark.parametrize("name", list(EDITORS))
def test_c_field_is_the_registry_entrys(name):
    assert c_field(name) == EDITORS[name].c_field


def test_c_field_of_an_unknown_editor_says_what_to_choose():
    with pytest.raises(RequestError, match="choose one of"):
        c_field("nope")


@pytest.mark.parametrize("name", [n for n in EDITORS if EDITORS[n].c_field is None])
def test_sweep_refuses_an_editor_without_c(default_lm, name):
    with pytest.raises(RequestError, match="no C to sweep"):
        sweep_c(default_lm, name, {}, presets("test", 1)[0], [0.0, 0.5])


def test_run_reports_c_from_the_editors_c_field(default_lm):
    run = analyse_edit(default_lm, "ft-l+sss", {"steps": 1, "sss_c": 0.3}, presets("test", 1)[0], with_embeddings=False)
    assert run.c == pytest.approx(0.3) and run.config[EDITORS["ft-l+sss"].c_field] == pytest.approx(0.3)
    without = next(n for n in EDITORS if EDITORS[n].c_field is None)
    assert dataclasses.replace(run, editor=without).c is None
