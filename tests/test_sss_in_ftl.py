"""What the SSS term does inside FT-L, checked on the property itself.

- its gradient reaches the edited weight: FT-L's first-step gradient at C is exactly
  (1 - C) * (gradient of the edit loss) + C * (gradient of lambda_max), with the lambda_max gradient
  computed independently through ``sss.lambda_max(create_graph=True)`` (a ``.detach()`` of the
  term leaves only the first part, and passed the older test that compared weights);
- what an edit does to lambda_max of the edit itself;
- half-precision edits change the prediction (a returned base weight would not).
"""

from __future__ import annotations

import pytest
import torch

from sss_core.editors import make_editor
from sss_core.evaluation.metrics import run_edit, teacher_forced
from sss_core.evaluation.presets import case_for_request, presets
from sss_core.models import DEFAULT_MODEL, load_model
from sss_core.sss import lambda_max
from sss_core.types import EditRequest

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")


class _RecordingAdam(torch.optim.Adam):
    """Adam that keeps a copy of its (single) parameter's gradient at every step."""

    grads: list[torch.Tensor] = []

    def step(self, closure=None):
        """Record the gradient, then take the real Adam step."""
        type(self).grads.append(self.param_groups[0]["params"][0].grad.detach().clone())
        return super().step(closure)


def _first_step_gradient(monkeypatch, lm, **settings) -> torch.Tensor:
    """The gradient FT-L's optimiser receives at its first step (the weight still at its base value)."""
    grads: list[torch.Tensor] = []
    recorder = type("Recorder", (_RecordingAdam,), {"grads": grads})
    monkeypatch.setattr(torch.optim, "Adam", recorder)
    make_editor("ft-l", steps=1, early_stop_loss=0.0, **settings).edit(lm.model, lm.tok, [FRANCE])
    monkeypatch.undo()
    assert len(grads) == 1
    return grads[0]


def _lambda_gradient(lm) -> torch.Tensor:
    """d lambda_max(prompt + target) / d W for FT-L's weight, through the public lambda_max."""
    weight = lm.spec.mlp_out_module(lm.model, 0).weight
    weight.requires_grad_(True)
    try:
        lam = lambda_max(lm.model, lm.tok, [FRANCE.prompt], [FRANCE.target_new], create_graph=True)
        (grad,) = torch.autograd.grad(lam.mean(), weight)
    finally:
        weight.requires_grad_(False)
    return grad


def test_sss_term_gradient_reaches_the_edited_weight(default_lm, monkeypatch):
    plain = _first_step_gradient(monkeypatch, default_lm)  # C = 0: the edit loss alone
    only_sss = _first_step_gradient(monkeypatch, default_lm, sss_c=1.0)  # C = 1: the SSS term alone
    reference = _lambda_gradient(default_lm)
    assert reference.abs().max() > 0
    # C = 1: the optimiser's gradient is lambda_max's gradient w.r.t. the edited weight
    torch.testing.assert_close(only_sss, reference, rtol=1e-3, atol=1e-3 * reference.abs().max().item())
    # 0 < C < 1: the convex combination of both gradients (paper Eq. 10)
    c = 0.5
    mixed = _first_step_gradient(monkeypatch, default_lm, sss_c=c)
    expected = (1 - c) * plain + c * reference
    torch.testing.assert_close(mixed, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    # the term is not negligible next to the edit loss's gradient: a detached term is caught above
    assert (mixed - (1 - c) * plain).norm() > 1e-3 * mixed.norm()


@pytest.fixture(scope="module")
def cases():
    return [case_for_request(FRANCE)] + presets("test", 4)


def test_lambda_max_after_ftl_and_ftl_sss(default_lm, cases):
    """Measured on the default model (10 fixed steps, no early stop), France -> Rome and 4 world cases:

    lambda_max of the edit (prompt + new target) before -> FT-L / FT-L+SSS (C = 0.9) / SSS alone (C = 1)
        Rome       0.151  -> 1.81e-05 / 1.54e-05 / 0.0725
        architect  0.181  -> 1.03e-05 / 9.79e-06 / 0.104
        English    0.381  -> 9.46e-07 / 9.84e-07 / 4.2e-09
        Russian    0.0525 -> 3.66e-06 / 3.32e-06 / 0.0372
        Ottawa     0.0142 -> 6.08e-04 / 5.47e-04 / 0.00449
    FT-L+SSS ends below FT-L in 5 of 7 cases measured (2 above; with the default early stop, above
    in 5 of 7), so that direction is not asserted. Robust in every case: both edits bring lambda_max
    far below its value before (the new target becomes confident, so J's gradient shrinks), and the
    SSS term alone (C = 1) lowers it too, which it exists to do.
    """
    model, tok = default_lm.model, default_lm.tok
    for case in cases:
        ftl = run_edit(model, tok, make_editor("ft-l", steps=10, early_stop_loss=0.0), case)
        sss = run_edit(model, tok, make_editor("ft-l+sss", steps=10, early_stop_loss=0.0), case)
        sss_only = run_edit(model, tok, make_editor("ft-l+sss", sss_c=1.0, steps=10, early_stop_loss=0.0), case)
        before = ftl.lambda_max_before
        assert sss.lambda_max_before == before == sss_only.lambda_max_before
        assert ftl.lambda_max_after < before / 10 and sss.lambda_max_after < before / 10, case.request
        assert sss_only.lambda_max_after < before, case.request
        assert sss.lambda_max_after != ftl.lambda_max_after  # the term changed the edit


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def half_lm(request):
    """The default model in half precision (bfloat16, float16)."""
    return load_model(DEFAULT_MODEL, device="cpu", dtype=request.param)


@pytest.mark.parametrize("editor", ["ft-l", "ft-l+sss"])
def test_half_precision_ftl_edit_changes_the_prediction(half_lm, editor):
    lm = half_lm
    before = teacher_forced(lm.model, lm.tok, [FRANCE.prompt], ["Rome"])[0]
    assert before.argmax_ids != before.target_ids
    edit = make_editor(editor, lr=5e-3, norm_constraint=None).edit(lm.model, lm.tok, [FRANCE])
    assert any(not torch.equal(edit.new[k], edit.base[k]) for k in edit.new)
    assert {v.dtype for v in edit.new.values()} == {lm.model.dtype}  # written back in the model's precision
    with edit:
        after = teacher_forced(lm.model, lm.tok, [FRANCE.prompt], ["Rome"])[0]
    assert after.argmax_ids == after.target_ids

