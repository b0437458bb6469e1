"""Bad input, concurrency and exact restore on the core (the app's side lives in tests/app)."""

import os
import threading

import pytest

from model_support import assert_bit_identical, state_copy
from sss_core.editors import make_editor
from sss_core.errors import RequestError
from sss_core.evaluation.metrics import request_warnings, run_edit
from sss_core.evaluation.presets import case_for_request, presets
from sss_core.sss import lambda_max
from sss_core.text import max_positions
from sss_core.types import EditRequest


def test_prompt_longer_than_the_context_is_refused(default_lm):
    long_prompt = "The capital of France is " * 80
    saved = state_copy(default_lm.model)
    with pytest.raises(RequestError, match=f"the model reads at most {max_positions(default_lm.model)}"):
        make_editor("ft-l").edit(default_lm.model, default_lm.tok, [EditRequest(long_prompt, "Rome")])
    with pytest.raises(RequestError, match="at most"):
        lambda_max(default_lm.model, default_lm.tok, [long_prompt], ["Rome"])
    assert_bit_identical(default_lm.model, saved)


def test_non_ascii_and_emoji_requests_edit_with_a_warning(default_lm):
    request = EditRequest("La capitale de la Côte d'Ivoire est", "Yamoussoukro 🏛️")
    assert any("non-ASCII" in w for w in request_warnings(default_lm.model, default_lm.tok, request))
    result = run_edit(default_lm.model, default_lm.tok, make_editor("ft-l", lr=5e-3, steps=40), case_for_request(request))
    assert 0.0 <= result.metrics["reliability"] <= 1.0


def test_target_equal_to_current_prediction_is_reported(default_lm):
    request = EditRequest("The capital of France is", "Paris", subject="France")
    assert any("already predicts" in w for w in request_warnings(default_lm.model, default_lm.tok, request))


def test_subject_missing_from_prompt_is_refused():
    with pytest.raises(RequestError, match="does not occur in the prompt"):
        EditRequest("The capital of France is", "Rome", subject="Spain").validate()


@pytest.mark.parametrize("runs", [int(os.environ.get("SSS_CONCURRENCY_RUNS", "2"))])
def test_concurrent_edits_get_their_own_results_and_restore_the_model(default_lm, runs):
    """Threads editing one shared model: each result is its own, the model ends bit-identical."""
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    cases = presets("test", 4)
    editor = make_editor("ft-l")
    alone = {c.request.case_id: run_edit(model, tok, editor, c, with_lambda=False).metrics for c in cases}
    for _ in range(runs):
        results: dict[str, dict] = {}
        errors: list[BaseException] = []

        def work(case):
            try:
                results[case.request.case_id] = run_edit(model, tok, editor, case, with_lambda=False).metrics
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert results == alone
        assert_bit_identical(model, saved)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_edit_leaves_the_model_restored(default_lm, exc):
    """A rerun or a closed tab stops the script thread with an exception mid-edit: nothing leaks."""
    from sss_core.hooks import patch_output
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    calls = {"n": 0}

    def boom(out):
        calls["n"] += 1
        if calls["n"] == 4:  # the fourth forward pass, in the middle of the optimisation
            raise exc("interrupted")
        return out

    hooks_before = {id(m): dict(m._forward_hooks) for m in model.modules()}
    with pytest.raises(exc):
        with patch_output(model, default_lm.spec.mlp_out_name(model, 1), boom):
            make_editor("ft-l+sss", steps=20, early_stop_loss=0.0).edit(
                model, tok, [EditRequest("The capital of France is", "Rome")])
    assert calls["n"] == 4
    assert_bit_identical(model, saved)
    assert not any(p.requires_grad for p in model.parameters())
    # the model's own hooks stay and ours are gone; transformers 5 adds hooks of its own on the first
    # forward pass that asks for hidden states, so the hooks after may be more than before
    after = {id(m): dict(m._forward_hooks) for m in model.modules()}
    assert all(after[k].items() >= hooks.items() for k, hooks in hooks_before.items())
    assert not [h for hooks in after.values() for h in hooks.values()
                if getattr(h, "__module__", "").startswith("sss_core")]
