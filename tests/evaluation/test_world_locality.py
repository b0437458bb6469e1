"""World locality (issue 26.1): every world fact read before and after an edit.

A hand-counted small world on the tiny GPT-2: a hand-made edit makes the model answer one chosen token
after every prompt that ends in the token " is", so exactly the facts whose prompt ends in " is" flip,
and every other logit is bit-identical. Then a real FT-L edit on the shipped model.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from model_support import assert_bit_identical, state_copy
from sss_core.editors import make_editor
from sss_core.editors.base import EditBase
from sss_core.evaluation.metrics import answer_probability, teacher_forced
from sss_core.evaluation.presets import default_world
from sss_core.evaluation.world_locality import baseline_for, read_facts, world_baseline, world_locality
from sss_core.jsonio import to_json
from sss_core.text import target_ids, text_ids
from sss_core.types import EditRequest
from sss_core.world.generate import Fact

# Six facts of the built-in world (prompts: template 0 of each relation).
FACTS = (
    Fact("France", "capital", "Paris"),  # "The capital of France is"        ends in " is": the edited fact
    Fact("Germany", "capital", "Berlin"),  # "The capital of Germany is"     ends in " is": flips
    Fact("France", "official_language", "French"),  # "The official language of France is": flips
    Fact("France", "continent", "Europe"),  # "France is a country in"        unchanged
    Fact("Paris", "city_country", "France"),  # "Paris is a city in"          unchanged
    Fact("France", "currency", "Euro"),  # "France pays with the"             unchanged
)
REQUEST = EditRequest("The capital of France is", "Rome", "France")


class AnswerAfterToken(EditBase):
    """Adds 1e4 to the logit of token ``answer`` at every position whose input token is ``after``:
    the model then answers ``answer`` right after that token, and every other logit is unchanged."""

    def __init__(self, model, after: int, answer: int):
        super().__init__(model)
        self.after, self.answer, self._handles, self._ids = after, answer, [], None

    def _apply(self) -> None:
        def keep_ids(module, args, kwargs):
            self._ids = kwargs["input_ids"]

        def boost(module, inputs, logits):
            hit = (self._ids == self.after).to(logits.dtype)[..., None]  # (batch, tokens, 1)
            return logits + 1e4 * hit * torch.nn.functional.one_hot(torch.tensor(self.answer), logits.shape[-1])

        self._handles = [self._model.register_forward_pre_hook(keep_ids, with_kwargs=True),
                         self._model.lm_head.register_forward_hook(boost)]

    def _revert(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _hand_edit(lm) -> AnswerAfterToken:
    """The edit answering a token none of FACTS answers before, after the token " is"."""
    is_token = text_ids(lm.tok, REQUEST.prompt)[-1]
    ends = [text_ids(lm.tok, f.prompt())[-1] == is_token for f in FACTS]
    assert ends == [True, True, True, False, False, False]  # the hand count below rests on this
    before = set(read_facts(lm.model, lm.tok, FACTS).top_ids)
    answer = next(i for i in range(len(lm.tok)) if i not in before and i != is_token)
    return AnswerAfterToken(lm.model, is_token, answer)


def test_world_locality_equals_the_hand_count(bench_lm):
    lm = bench_lm
    saved = state_copy(lm.model)
    wl = world_locality(lm.model, lm.tok, FACTS, _hand_edit(lm), REQUEST)
    # should change: the France capital fact; the 5 others: Germany capital and France official language
    # flip (prompts end in " is"), continent, city_country and currency do not -> 3 / 5
    assert [f.should_change for f in wl.facts] == [True, False, False, False, False, False]
    assert [f.changed for f in wl.facts] == [True, True, True, False, False, False]
    assert wl.world_locality == pytest.approx(3 / 5)
    assert [(f.subject, f.relation) for f in wl.damaged] == [("Germany", "capital"), ("France", "official_language")]
    assert wl.by("relation") == {"capital": (1, 1), "official_language": (1, 1), "continent": (0, 1),
                                 "city_country": (0, 1), "currency": (0, 1)}
    assert wl.by("subject") == {"Germany": (1, 1), "France": (1, 3), "Paris": (0, 1)}
    for f in wl.facts:  # flipped facts lose their object; the others read exactly as before
        assert f.p_after < 1e-6 if f.changed else f.p_after == f.p_before
    assert all(f.after == wl.facts[0].after for f in wl.facts[:3])
    d = json.loads(to_json(wl.as_dict()), parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    assert (d["facts"], d["should_change"], d["others"], d["damaged"]) == (6, 1, 5, 2)
    assert d["world_locality"] == pytest.approx(0.6)
    assert d["edited_facts"][0]["prompt"] == REQUEST.prompt and d["edited_facts"][0]["changed"] is True
    assert [x["subject"] for x in d["damaged_facts"]] == ["Germany", "France"]
    assert d["by_subject"] == {"Germany": {"damaged": 1, "total": 1}, "France": {"damaged": 1, "total": 3}}
    assert d["by_relation"]["continent"] == {"damaged": 0, "total": 1}
    assert wl.as_dict(max_facts=1)["damaged_listed"] == 1 and wl.as_dict(max_facts=1)["damaged"] == 2
    assert_bit_identical(lm.model, saved)


def test_the_edited_fact_is_found_by_any_template_or_by_subject_and_relation(bench_lm):
    lm = bench_lm
    baseline = world_baseline(lm.model, lm.tok, FACTS)
    by_paraphrase = EditRequest("Q: What is the capital of France? A:", "Rome", "")  # another template
    wl = world_locality(lm.model, lm.tok, FACTS, _hand_edit(lm), by_paraphrase, baseline)
    assert [f.should_change for f in wl.facts] == [True, False, False, False, False, False]
    typed = EditRequest("France's seat of government is", "Rome", "France")  # not a world prompt
    wl = world_locality(lm.model, lm.tok, FACTS, _hand_edit(lm), typed, baseline, relation="official_language")
    assert [f.should_change for f in wl.facts] == [False, False, True, False, False, False]
    assert wl.world_locality == pytest.approx(3 / 5)  # France capital and Germany capital of 5 flipped
    unknown = world_locality(lm.model, lm.tok, FACTS, _hand_edit(lm), typed, baseline)
    assert not any(f.should_change for f in unknown.facts) and unknown.world_locality == pytest.approx(3 / 6)


def test_read_facts_agrees_with_the_metrics_teacher_forcing(bench_lm):
    """Batched by length, returned in the facts' order: each fact's top-1 answer is the teacher-forced
    argmax at its object's first token, and P(object) is ``answer_probability``'s."""
    lm, facts = bench_lm, default_world().facts[::53]
    reading = read_facts(lm.model, lm.tok, facts, batch_size=8)
    prompts, objects = [f.prompt() for f in facts], [f.object for f in facts]
    assert list(reading.top_ids) == [p.argmax_ids[0] for p in teacher_forced(lm.model, lm.tok, prompts, objects)]
    assert list(reading.p_object) == pytest.approx(answer_probability(lm.model, lm.tok, prompts, objects), rel=1e-4)
    assert list(reading.top_texts) == [lm.tok.decode([i]) for i in reading.top_ids]
    with pytest.raises(ValueError, match="no facts"):
        read_facts(lm.model, lm.tok, [])


def test_baseline_is_read_once_per_model_and_again_after_its_weights_change(bench_lm):
    lm = bench_lm
    first = baseline_for(lm.model, lm.tok, FACTS)
    assert baseline_for(lm.model, lm.tok, FACTS) is first
    with pytest.raises(ValueError, match="other facts"):
        world_locality(lm.model, lm.tok, FACTS[:3], _hand_edit(lm), REQUEST, first)
    bias = lm.model.transformer.ln_f.bias
    with torch.no_grad():
        bias += 1.0
    try:
        assert baseline_for(lm.model, lm.tok, FACTS) is not first
    finally:
        with torch.no_grad():
            bias -= 1.0


def test_ftl_on_the_shipped_model_counts_the_edited_fact_as_should_change(default_lm):
    lm, facts = default_lm, default_world().facts
    saved = state_copy(lm.model)
    torch.manual_seed(0)
    edit = make_editor("ft-l").edit(lm.model, lm.tok, [REQUEST])
    wl = world_locality(lm.model, lm.tok, facts, edit, REQUEST)
    assert_bit_identical(lm.model, saved)
    assert not edit.applied
    edited = [f for f in wl.facts if f.should_change]
    assert [(f.subject, f.relation) for f in edited] == [("France", "capital")]
    first = {w: lm.tok.decode(target_ids(lm.tok, REQUEST.prompt, w)[1][:1]) for w in ("Paris", "Rome")}
    assert (edited[0].before, edited[0].after, edited[0].changed) == (first["Paris"], first["Rome"], True)
    assert 0.0 <= wl.world_locality <= 1.0
    assert wl.world_locality == pytest.approx(1 - wl.n_damaged / (len(facts) - 1))
    assert len(wl.others) == len(facts) - 1 == 2115
    d = wl.as_dict(max_facts=20)
    assert sum(v["damaged"] for v in d["by_relation"].values()) == wl.n_damaged
    assert sum(v["total"] for v in d["by_relation"].values()) == 2115
    assert sum(v["damaged"] for v in d["by_subject"].values()) == wl.n_damaged
    assert d["damaged_listed"] == min(20, wl.n_damaged) and not math.isnan(d["mean_p_object_after"])


def test_a_changed_answer_says_which_way_it_moved():
    from sss_core.evaluation.world_locality import FactChange

    def change(before, after):
        return FactChange("Stiamound Broulirk", "birthplace", "Stiamound Broulirk was born in", "Moscow",
                          before, after, 0.45, 0.51, True, False)
    assert change(" the", " M").direction == "to the answer"
    assert change(" Mos", " the").direction == "away from the answer"
    assert change(" the", " a").direction == "between others"
    assert change(" the", " M").as_dict()["direction"] == "to the answer"
    assert "direction" not in FactChange("s", "r", "p", "o", " x", " x", 0.5, 0.5, False, False).as_dict()
