"""The GPU/scale paths that can be checked on a CPU: device maps and half-precision dtypes."""

import math

import pytest
import torch

from model_support import assert_bit_identical, state_copy
from sss_core.editors import make_editor
from sss_core.evaluation.metrics import teacher_forced
from sss_core.models import DEFAULT_MODEL, load_model
from sss_core.sss import lambda_max
from sss_core.types import EditRequest

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")


def test_device_map_over_cpu_modules_edits_and_reverts():
    """A model loaded with an explicit device map is placed by it, edits, and reverts bit-exactly.

    transformers 4.x dispatches it with accelerate's hooks and records ``hf_device_map``;
    transformers 5 loads a map with one device straight onto it, without hooks or ``hf_device_map``.
    """
    n_layer = 4
    device_map = {"transformer.wte": "cpu", "transformer.wpe": "cpu", "transformer.drop": "cpu",
                  **{f"transformer.h.{i}": "cpu" for i in range(n_layer)}, "transformer.ln_f": "cpu",
                  "lm_head": "cpu"}
    lm = load_model(DEFAULT_MODEL, device_map=device_map)
    assert {p.device.type for p in lm.model.parameters()} == {"cpu"}
    if hasattr(lm.model, "hf_device_map"):  # transformers 4.x
        assert set(lm.model.hf_device_map.values()) == {"cpu"}
    saved = state_copy(lm.model)
    with make_editor("ft-l+sss").edit(lm.model, lm.tok, [FRANCE]):
        pred = teacher_forced(lm.model, lm.tok, [FRANCE.prompt], ["Rome"])[0]
        assert pred.argmax_ids == pred.target_ids
    assert_bit_identical(lm.model, saved)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_lambda_and_sss_edit(dtype):
    lm = load_model(DEFAULT_MODEL, device="cpu", dtype=dtype)
    assert next(lm.model.parameters()).dtype == dtype
    lam = lambda_max(lm.model, lm.tok, [FRANCE.prompt], ["Rome"])
    assert lam.dtype == torch.float32 and math.isfinite(lam.item()) and lam.item() > 0
    saved = state_copy(lm.model)
    edit = make_editor("ft-l+sss", lr=5e-3, norm_constraint=None).edit(lm.model, lm.tok, [FRANCE])
    with edit:
        assert all(v.dtype == dtype for v in edit.new.values())
    assert_bit_identical(lm.model, saved)
