"""The app's sequential editing is the bench's: a memory editor (SERAC) stacks its edits in one memory across
the history, as runners.sequential_edits does; another editor after it is refused with a message."""

from __future__ import annotations

import pytest

from sss_core.analysis import sequential_baseline, sequential_step
from sss_core.errors import RequestError
from sss_core.evaluation.presets import presets
from sss_core.evaluation.runners import sequential_edits
from sss_core.editors import make_editor


def test_serac_history_keeps_every_edit_in_one_memory_like_the_bench(default_lm):
    cases = presets("test", 3)
    baseline = sequential_baseline(default_lm, cases[0].probes[:2])
    history = []
    for case in cases:
        history.append(sequential_step(default_lm, history, baseline, "serac", {}, case))
    assert [s.retained for s in history] == [1, 2, 3]
    assert history[-1].retention == 1.0  # the third step still routes the first two edits
    bench = list(sequential_edits(default_lm.model, default_lm.tok, make_editor("serac"), cases, seed=0))
    finals = [o for o in bench if o.key.mode.endswith("/final")]
    assert [o.result.metrics["reliability"] for o in finals] == [1.0, 1.0, 1.0]
    # every step reverted its edits: the history's memory is empty between steps
    assert len(history[-1].editor_obj.wrapper(default_lm.model, default_lm.tok).memory) == 0
    assert all(s.editor_obj is history[0].editor_obj for s in history)  # one memory across the history


def test_another_editor_after_serac_is_refused_with_the_reason(default_lm):
    cases = presets("test", 2)
    baseline = sequential_baseline(default_lm, cases[0].probes[:2])
    history = [sequential_step(default_lm, [], baseline, "serac", {}, cases[0])]
    with pytest.raises(RequestError, match=r"^serac keeps its edits in a memory beside the model; after its edits this "
                                           r"history stacks only more serac edits with the same settings\. Start a new "
                                           r"history to use another editor$"):
        sequential_step(default_lm, history, baseline, "ft-l", {}, cases[1])
