"""Editors are built once per model and settings and kept (``editors.kept_editor``): the pipeline's
runs with a kept editor equal those of a freshly built one, for every registered editor."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from sss_core.analysis import AnalysisOptions, run_record
from sss_core.editors import EDITORS, KEPT_PER_MODEL, kept_editor, make_editor
from sss_core.evaluation.metrics import edit_and_score
from sss_core.evaluation.presets import presets
from sss_core.record import make_record

NO_EMBEDDINGS = AnalysisOptions(background=0, embeddings=False, top_k=0)


def _deltas(run) -> dict[str, np.ndarray]:
    return {name: np.asarray(d) for name, d in (run.weight_deltas or {}).items()}


@pytest.mark.parametrize("editor", list(EDITORS))
def test_a_kept_editor_edits_as_a_fresh_one_does(default_lm, editor):
    case = presets("test", 1)[0]
    record = make_record(editor, {}, case, default_lm, analysis=NO_EMBEDDINGS)
    settings = record.settings
    first, second = run_record(default_lm, record), run_record(default_lm, record)
    assert kept_editor(default_lm.model, editor, settings) is kept_editor(default_lm.model, editor, settings)
    torch.manual_seed(record.seed)
    fresh_edit, fresh = edit_and_score(default_lm.model, default_lm.tok, make_editor(editor, **settings), case,
                                       record.seed)
    for run in (first, second):
        assert run.result.metrics == fresh.metrics
        assert [p.score for p in run.result.probes] == [p.score for p in fresh.probes]
        assert run.result.lambda_max_after == fresh.lambda_max_after
    a, b = _deltas(first), _deltas(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    if editor.startswith("serac"):  # its memory holds no earlier run's edit
        kept = kept_editor(default_lm.model, editor, settings)
        assert len(kept.wrapper(default_lm.model, default_lm.tok).memory) == 0


def test_other_settings_get_another_editor_and_the_oldest_is_dropped(default_lm):
    model = default_lm.model
    base = make_record("ft-l", {}, presets("test", 1)[0], default_lm).settings
    first = kept_editor(model, "ft-l", base)
    other = kept_editor(model, "ft-l", {**base, "lr": base["lr"] * 2})
    assert other is not first and other.config.lr == 2 * first.config.lr
    assert kept_editor(model, "ft-l", base) is first  # used again: now the most recent
    for i in range(KEPT_PER_MODEL):
        kept_editor(model, "ft-l", {**base, "steps": 100 + i})
    assert kept_editor(model, "ft-l", base) is not first  # dropped once KEPT_PER_MODEL others came after it


def test_a_kept_editor_dies_with_its_model(default_lm):
    import copy
    import weakref

    from sss_core.editors import _KEPT
    model = copy.deepcopy(default_lm.model)
    settings = make_record("ft-l", {}, presets("test", 1)[0], default_lm).settings
    editor = weakref.ref(kept_editor(model, "ft-l", settings))
    assert model in _KEPT
    del model
    gc.collect()
    assert editor() is None
