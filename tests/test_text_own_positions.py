"""Tokenizers that add tokens around a text (issue 24.2): every measure reads the text's own positions.

A Llama-style tokenizer's post-processor puts ``<s>`` in front of every text and may append ``</s>``.
The appended token is not part of the text: a prediction read there is the prediction after an
end-of-text, not after the prompt. So a tokenizer that appends an EOS must give exactly the numbers
of the same tokenizer without it (the leading BOS stays in both). Checked on the shipped model (its
``<|endoftext|>`` as BOS and EOS, and GPT-2-style EOS only) and on a tiny Llama with distinct
``<s>`` / ``</s>`` ids, for every place text becomes ids: top-k / top-1 prediction, teacher-forced
metrics and answer probability, sentence embeddings with each pooling, lambda_max per sentence,
SERAC's inputs, ROME/MEMIT's rows and context prefixes, key statistics and the length count.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model_support import tiny_model
from sss_core.errors import RequestError
from sss_core.models import LoadedModel
from sss_core.text import n_tokens, text_ids

PROMPTS = ["The capital of France is", "Rome is a city in", "The official language of France is"]
ANSWERS = ["Paris", "Italy", "French"]


def with_template(tok, single: str, specials: list[tuple[str, int]]):
    """A copy of the fast tokenizer ``tok`` whose post-processor adds the tokens of ``single``
    (a tokenizers TemplateProcessing, e.g. ``"<s> $A </s>"``) around every text."""
    from tokenizers import processors
    tok = copy.deepcopy(tok)
    template = processors.TemplateProcessing(single=single, special_tokens=specials)
    tok.backend_tokenizer.post_processor = template
    return tok


def _llama_style_pair(bos: str, eos: str, bos_id: int, eos_id: int, base):
    """(tokenizer adding only a BOS, the same tokenizer also appending an EOS)."""
    plain = with_template(base, f"{bos} $A", [(bos, bos_id)])
    appending = with_template(base, f"{bos} $A {eos}", sorted({(bos, bos_id), (eos, eos_id)}))
    return plain, appending


@pytest.fixture(scope="module", params=["shipped-bos-eos", "shipped-eos-only", "tiny-llama"])
def pair(request, default_lm) -> tuple[LoadedModel, LoadedModel]:
    """(model with a tokenizer that appends nothing, the same model with one that appends an EOS)."""
    if request.param == "shipped-bos-eos":  # <|endoftext|> both in front and after, as BOS and EOS
        plain, appending = _llama_style_pair("<|endoftext|>", "<|endoftext|>", 0, 0, default_lm.tok)
        model = default_lm
    elif request.param == "shipped-eos-only":  # the shipped tokenizer as is, and one appending an EOS
        plain = default_lm.tok
        appending = with_template(default_lm.tok, "$A <|endoftext|>", [("<|endoftext|>", 0)])
        model = default_lm
    else:  # distinct <s> and </s>, Metaspace pieces: a tiny random Llama with a Llama-style tokenizer
        from test_text import _tokenizer
        base = _tokenizer("no_bos")
        plain, appending = _llama_style_pair("<s>", "</s>", base.bos_token_id, base.eos_token_id, base)
        model = tiny_model("llama", plain)
    assert appending(PROMPTS[0])["input_ids"][-1] == appending.eos_token_id  # the EOS really is appended
    assert plain(PROMPTS[0])["input_ids"][-1] != plain.eos_token_id
    return (LoadedModel(model.model, plain, model.spec, model.name),
            LoadedModel(model.model, appending, model.spec, model.name))


def test_text_ids_and_n_tokens_drop_only_the_appended_token(pair):
    plain, appending = pair
    for text in PROMPTS:
        assert text_ids(appending.tok, text) == text_ids(plain.tok, text) == plain.tok(text)["input_ids"]
        assert n_tokens(appending.tok, text) == n_tokens(plain.tok, text) == len(plain.tok(text)["input_ids"])
        assert text_ids(appending.tok, text, max_length=2) == plain.tok(text)["input_ids"][:2]


def test_top_k_prediction_is_made_at_the_prompt_s_last_token(pair):
    from sss_core.evaluation.metrics import top_k
    plain, appending = pair
    for prompt in PROMPTS:
        assert top_k(appending.model, appending.tok, prompt, 5) == top_k(plain.model, plain.tok, prompt, 5)


def test_teacher_forced_metrics_and_answer_probability(pair):
    from sss_core.evaluation.metrics import answer_probability, teacher_forced
    plain, appending = pair
    assert (teacher_forced(appending.model, appending.tok, PROMPTS, ANSWERS)
            == teacher_forced(plain.model, plain.tok, PROMPTS, ANSWERS))
    assert (answer_probability(appending.model, appending.tok, PROMPTS, ANSWERS)
            == answer_probability(plain.model, plain.tok, PROMPTS, ANSWERS))


def test_sentence_embeddings_with_each_pooling_and_the_next_token(pair):
    from sss_core.embeddings import POOLINGS, embed_prompts, sentence_states
    plain, appending = pair
    a = sentence_states(appending.model, appending.tok, PROMPTS)
    b = sentence_states(plain.model, plain.tok, PROMPTS)
    for pooling in POOLINGS:
        np.testing.assert_array_equal(a.pooled[pooling], b.pooled[pooling], err_msg=pooling)
        np.testing.assert_array_equal(embed_prompts(appending.model, appending.tok, PROMPTS, pooling),
                                      b.pooled[pooling], err_msg=pooling)
    np.testing.assert_array_equal(a.next_token_ids, b.next_token_ids)
    np.testing.assert_array_equal(a.next_token_probs, b.next_token_probs)


def test_lambda_max_per_sentence_against_its_top_answer(pair):
    from sss_core.embeddings import sentence_states
    from sss_core.sparsity import answer_rows, lambda_and_probability
    plain, appending = pair
    answers = sentence_states(plain.model, plain.tok, PROMPTS, ("last",)).next_token_ids
    rows_a = answer_rows(appending.tok, PROMPTS, answers)
    rows_b = answer_rows(plain.tok, PROMPTS, answers)
    assert rows_a == rows_b
    lam_a, p_a = lambda_and_probability(appending.model, appending.tok, rows_a)
    lam_b, p_b = lambda_and_probability(plain.model, plain.tok, rows_b)
    np.testing.assert_array_equal(lam_a, lam_b)
    np.testing.assert_array_equal(p_a, p_b)


def test_serac_inputs_read_each_text_s_own_positions(pair):
    from sss_core.editors.serac import base_hidden, check_fits, counterfactual_forward, edit_prefix
    from sss_core.types import EditRequest
    plain, appending = pair
    request = EditRequest(PROMPTS[0], "Rome")
    texts = [*PROMPTS, edit_prefix(request)]
    hidden_a, mask_a = base_hidden(appending.model, appending.tok, texts)
    hidden_b, mask_b = base_hidden(plain.model, plain.tok, texts)
    assert torch.equal(mask_a, mask_b)
    assert all(torch.equal(x, y) for x, y in zip(hidden_a, hidden_b))
    # the counterfactual model reads the edit text, then the input: no EOS between them
    embeds = plain.model.get_input_embeddings()(torch.tensor([plain.tok(PROMPTS[1])["input_ids"]]))
    mask = torch.ones(embeds.shape[:2], dtype=torch.long)
    with torch.no_grad():
        cf_a = counterfactual_forward(appending.model, appending.tok, embeds, mask, [request])
        cf_b = counterfactual_forward(plain.model, plain.tok, embeds, mask, [request])
    assert torch.equal(cf_a[2], cf_b[2]) and torch.equal(cf_a[1], cf_b[1])
    # the length check counts the tokens the model reads: a model whose context is exactly that long fits
    need = len(plain.tok(edit_prefix(request))["input_ids"]) + len(plain.tok(PROMPTS[0] + " Rome")["input_ids"])

    class ExactContext:
        config = SimpleNamespace(n_positions=need)

        def get_input_embeddings(self):
            return SimpleNamespace(weight=torch.zeros(1))

    check_fits(ExactContext(), appending.tok, [request])
    ExactContext.config = SimpleNamespace(n_positions=need - 1)
    with pytest.raises(RequestError, match=f"is {need} tokens, more than the model's {need - 1}"):
        check_fits(ExactContext(), appending.tok, [request])


def test_rank_one_rows_and_context_prefixes(pair):
    from sss_core.editors._rank_one import build_rows, context_prefixes
    from sss_core.types import EditRequest
    plain, appending = pair
    assert (context_prefixes(appending.model, appending.tok, 2, 4, seed=0)
            == context_prefixes(plain.model, plain.tok, 2, 4, seed=0))
    requests = [EditRequest("The capital of France is", "Rome", "France")]
    a = build_rows(appending.model, appending.tok, requests, ["", "It is. "], "{} is a")
    b = build_rows(plain.model, plain.tok, requests, ["", "It is. "], "{} is a")
    for field in ("lookup", "owner", "is_kl", "last"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert torch.equal(a.batch.input_ids, b.batch.input_ids)
    assert torch.equal(a.batch.target_mask, b.batch.target_mask)


def test_key_statistics_read_each_sample_s_own_tokens(pair):
    from sss_core.editors.stats import _compute_moments
    plain, appending = pair
    layer = 0
    moments_a, n_a = _compute_moments(appending.model, appending.tok, [layer], PROMPTS)
    moments_b, n_b = _compute_moments(plain.model, plain.tok, [layer], PROMPTS)
    assert n_a == n_b == sum(len(plain.tok(t)["input_ids"]) for t in PROMPTS)
    assert torch.equal(moments_a[layer], moments_b[layer])
