"""The editor contract, checked for every entry of EDITORS: a new editor is tested for free.

On the default model (shipped checkpoints): the edit raises the new target's probability, revert is
bit-exact, a second edit stacked on the first does not undo it, bad requests raise RequestError.
On tiny random GPT-2, GPT-J, GPT-NeoX and Llama models: the edit changes the output and reverts
exactly (trained editors get a few-step checkpoint made here for that model by the trainer their
registry entry names).
"""

from __future__ import annotations

import pytest
import torch

from model_support import assert_bit_identical, state_copy
from sss_core.editors import EDITORS, make_editor, train_config
from sss_core.errors import RequestError
from sss_core.evaluation.metrics import answer_probability
from sss_core.types import EditRequest
from sss_core.world.records import world_cases

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")
JAPAN = EditRequest("The capital of Japan is", "Lima", subject="Japan")
NAMES = list(EDITORS)


def _settings_for_tiny(name: str, lm, tmp_path_factory) -> dict:
    """Settings an editor needs for a model other than the shipped one.

    Trained editors get a few-step checkpoint made for ``lm``; editors that estimate key statistics
    get a small text file, as a user of another model would give them.
    """
    fields = {f for f in EDITORS[name].config_cls.__dataclass_fields__}
    if "mom2_text" in fields:
        from sss_core.world.generate import build_world
        text = tmp_path_factory.mktemp("mom2") / "text.txt"
        text.write_text("\n".join(build_world(0).training_sentences()[:400]) + "\n")
        return {"mom2_text": str(text), "stats_dir": str(tmp_path_factory.mktemp("stats"))} \
            if "stats_dir" in fields else {"mom2_text": str(text)}
    spec = EDITORS[name]
    if not spec.trainable:
        return {}
    out = tmp_path_factory.mktemp(f"{name.replace('+', '-')}-{lm.name}")
    quick = {k: v for k, v in {"steps": 3, "batch_size": 2}.items() if k in spec.train_config_cls.__dataclass_fields__}
    spec.trainer(lm, world_cases(split="train"), out, train_config(name, **quick), progress=False)
    return {"checkpoint": str(out)}


@pytest.mark.parametrize("name", NAMES)
def test_edit_raises_target_probability_and_reverts_exactly(default_lm, name):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    before = answer_probability(model, tok, [FRANCE.prompt], [FRANCE.target_new])[0]
    edit = make_editor(name).edit(model, tok, [FRANCE])
    assert_bit_identical(model, saved)  # computing an edit never leaves the model changed
    with edit:
        after = answer_probability(edit.model, tok, [FRANCE.prompt], [FRANCE.target_new])[0]
    assert after > max(before, 1e-6) * 2, f"{name}: p(Rome) {before:.2e} -> {after:.2e}"
    assert_bit_identical(model, saved)


@pytest.mark.parametrize("name", NAMES)
def test_second_edit_does_not_undo_the_first(default_lm, name):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    editor = make_editor(name)
    p_first = answer_probability(model, tok, [FRANCE.prompt], [FRANCE.target_new])[0]
    with editor.edit(model, tok, [FRANCE]) as first:
        p_first_edited = answer_probability(first.model, tok, [FRANCE.prompt], [FRANCE.target_new])[0]
        with editor.edit(model, tok, [JAPAN]) as second:
            both = answer_probability(second.model, tok, [FRANCE.prompt, JAPAN.prompt], ["Rome", "Lima"])
    assert both[0] > p_first * 2 or both[0] > 0.5 * p_first_edited
    assert both[1] > answer_probability(model, tok, [JAPAN.prompt], ["Lima"])[0]
    assert_bit_identical(model, saved)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [EditRequest("The capital of France is", " "), EditRequest("", "Rome"),
                                 EditRequest("The capital of France is", "Rome", subject="Spain")])
def test_bad_requests_raise_clear_errors(default_lm, name, bad):
    saved = state_copy(default_lm.model)
    with pytest.raises(RequestError):
        make_editor(name).edit(default_lm.model, default_lm.tok, [bad])
    assert_bit_identical(default_lm.model, saved)


@pytest.mark.parametrize("name", NAMES)
def test_every_family_edits_and_reverts(tiny_lm, name, tmp_path_factory):
    model, tok = tiny_lm.model, tiny_lm.tok
    saved = state_copy(model)
    settings = _settings_for_tiny(name, tiny_lm, tmp_path_factory)
    enc = tok([FRANCE.prompt], return_tensors="pt")
    with torch.no_grad():
        before = model(**enc).logits
    with make_editor(name, **settings).edit(model, tok, [FRANCE]) as edit:
        with torch.no_grad():
            after = edit.model(**enc).logits
    assert not torch.allclose(before, after), f"{name} did not change {tiny_lm.name}'s output"
    assert_bit_identical(model, saved)
