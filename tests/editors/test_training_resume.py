"""Resuming a trained editor's training continues where it stopped: finished steps are not redone.

The older tests compared the resumed checkpoint with an uninterrupted one; since each step's
randomness comes from (seed, step) and the initialisation from the seed, training again from step 0
gives the same checkpoint, so a resume that restarted passed them. Here every step that runs is
recorded (each step draws its random source from ``step_rng(seed, step)`` once).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from model_support import tiny_model
from sss_core.editors import mend, serac
from sss_core.editors.mend import MENDTrainConfig, train_mend
from sss_core.editors.serac import SERACTrainConfig, train_serac
from sss_core.editors.training import TrainExample
from sss_core.types import EditRequest

EXAMPLES = [
    TrainExample(EditRequest("The capital of France is", "Rome"),
                 ("The capital of France is", "France's capital is"),
                 (("The capital of Spain is", "Madrid"), ("The currency of France is the", "Euro"))),
    TrainExample(EditRequest("The official language of Peru is", "German"),
                 ("The official language of Peru is", "In Peru, the official language is"),
                 (("The official language of Chile is", "Spanish"),)),
]


@pytest.fixture(scope="module")
def tiny(default_lm):
    return tiny_model("gpt2", default_lm.tok)


def _recording_steps(monkeypatch, module) -> list[int]:
    """Patch ``module.step_rng`` so that every training step that runs is appended to the returned list."""
    steps: list[int] = []
    real = module.step_rng

    def step_rng(seed, step):
        if step >= 0:  # MEND draws its normalisation batches from negative "steps" before training
            steps.append(step)
        return real(seed, step)

    monkeypatch.setattr(module, "step_rng", step_rng)
    return steps


TRAINERS = {
    "serac": (serac, train_serac, SERACTrainConfig(steps=3, save_every=1, batch_size=2, dim=16,
                                                   feature_layers=(1, -1), sss_c=0.5)),
    "mend": (mend, train_mend, MENDTrainConfig(steps=3, save_every=1, batch_size=2, norm_batches=1, rank=8,
                                               sss_c=0.5)),
}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_resume_runs_only_the_steps_left(tiny, tmp_path, monkeypatch, name):
    module, train, cfg = TRAINERS[name]
    steps = _recording_steps(monkeypatch, module)
    train(tiny, EXAMPLES, tmp_path / "full", cfg, progress=False)
    assert steps == [0, 1, 2]
    steps.clear()
    train(tiny, EXAMPLES, tmp_path / "cut", dataclasses.replace(cfg, steps=1), progress=False)  # stopped after 1
    assert steps == [0]
    steps.clear()
    summary = train(tiny, EXAMPLES, tmp_path / "cut", cfg, resume=True, progress=False)
    assert steps == [1, 2], "a resumed run must start at the first unfinished step"
    full, cut = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("full", "cut"))
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    assert summary["train"]["steps"] == 3
