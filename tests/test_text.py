"""text.py: right padding, (prompt, target) batches, the causal forward and the KL locality loss."""

from __future__ import annotations

import pytest
import torch

from sss_core.text import (encode_pairs, forward_hidden, forward_logits, kl_loc, pad_id, pair_batch, right_pad,
                           target_nll)


def test_right_pad_puts_ids_first_and_marks_them():
    ids, mask = right_pad([[5, 6, 7], [8], []], pad=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long
    with pytest.raises(ValueError):
        right_pad([], pad=0)


def test_pad_id_falls_back_to_zero():
    class Tok:
        pad_token_id = None
    assert pad_id(Tok()) == 0
    Tok.pad_token_id = 7
    assert pad_id(Tok()) == 7


def test_pair_batch_marks_targets_and_allows_prompt_only_rows():
    b = pair_batch([([1, 2], [3]), ([4], [])], pad=9)
    assert b.input_ids.tolist() == [[1, 2, 3], [4, 9, 9]]
    assert b.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b.target_mask.tolist() == [[False, False, True], [False, False, False]]
    assert b.predict_mask.tolist() == [[False, True], [False, False]]


def test_encode_pairs_is_pair_batch_of_the_joint_tokenisation(default_lm):
    tok = default_lm.tok
    b = encode_pairs(tok, ["The capital of France is", "Paris is in"], ["Paris", "France"])
    assert tok.decode(b.input_ids[0][b.target_mask[0]]) == " Paris"
    assert b.attention_mask.sum(1).tolist() == [len(tok("The capital of France is Paris")["input_ids"]),
                                               len(tok("Paris is in France")["input_ids"])]


def test_forward_on_padded_rows_matches_each_row_alone(default_lm):
    """Right padding does not change a row's logits or hidden states at its real tokens."""
    model, tok = default_lm.model, default_lm.tok
    b = encode_pairs(tok, ["The capital of France is", "Ba Shudyk works for"], ["Paris", "Kloustai Works"])
    with torch.no_grad():
        logits = forward_logits(model, b)
        logits_h, hidden = forward_hidden(model, b.input_ids, b.attention_mask)
        for r in range(2):
            n = int(b.attention_mask[r].sum())
            alone = model(input_ids=b.input_ids[r:r + 1, :n]).logits[0]
            assert torch.allclose(logits[r, :n], alone, atol=1e-4)
    assert torch.equal(logits, logits_h)
    assert len(hidden) == model.config.num_hidden_layers + 1 and hidden[-1].shape[:2] == b.input_ids.shape
    assert target_nll(logits, b).shape == (2,)


def test_kl_loc_is_the_masked_mean_of_kl():
    torch.manual_seed(0)
    pre, post = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    p, q = pre.softmax(-1), post.softmax(-1)
    kl = (p * (p.log() - q.log())).sum(-1)  # (2, 3)
    expected = (kl[0, 0] + kl[0, 1] + kl[1, 0]) / 3
    assert torch.allclose(kl_loc(pre, post, mask), expected, atol=1e-6)
    assert kl_loc(pre, pre, mask).abs() < 1e-6
    assert kl_loc(pre.half(), post.half(), mask).dtype == torch.float32


# --- joining prompt and target, and locating the subject, on every kind of tokenizer ------------

CORPUS = ["The capital of France is Paris.", "The capital of Italy is Rome.", "The Indian Ocean lies south of India,",
          "whose capital is New Delhi.", "Rome is a city in Italy.", "The official language of France is French."] * 4


def _tokenizer(kind: str):
    """A tiny tokenizer of ``kind``, trained here with the ``tokenizers`` library (no download).

    byte_bpe: GPT-2 style byte-level BPE, no special tokens added. sentencepiece_bos: Metaspace
    ("▁") BPE with a BOS in front (Llama style). post_processor: BOS in front and EOS after every
    text (a post-processor adding special tokens). no_bos: Metaspace BPE with nothing added.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    specials = ["<unk>", "<s>", "</s>"]
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    if kind == "byte_bpe":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = []
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                       initial_alphabet=alphabet, show_progress=False))
    if kind == "sentencepiece_bos":
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    elif kind == "post_processor":
        tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


KINDS = ("byte_bpe", "sentencepiece_bos", "post_processor", "no_bos")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prompt", ["The capital of France is", "The capital of France is "])
@pytest.mark.parametrize("target", ["Rome", " Rome", "  Rome"])
def test_a_target_joins_its_prompt_with_exactly_one_space_and_nothing_else(kind, prompt, target):
    from sss_core.text import joined_text, target_ids
    tok = _tokenizer(kind)
    p, t = target_ids(tok, prompt, target)
    reference = target_ids(tok, "The capital of France is", "Rome")
    assert (p, t) == reference  # however the space was typed, the same ids
    assert joined_text(prompt, target) == "The capital of France is Rome"
    assert not set(t) & set(tok.all_special_ids), "a special token inside the target"
    assert p[-1] not in tok.all_special_ids, "a special token between prompt and target"
    assert tok.decode(p + t, skip_special_tokens=True) == "The capital of France is Rome"  # no doubled space
    assert tok.decode(t).strip() == "Rome" and "  " not in tok.decode(t)
    if kind in ("sentencepiece_bos", "post_processor"):
        assert p[0] == tok.bos_token_id  # the BOS stays in front of the prompt


@pytest.mark.parametrize("kind", KINDS)
def test_encode_pairs_marks_only_the_target_for_every_tokenizer_kind(kind):
    tok = _tokenizer(kind)
    b = encode_pairs(tok, ["The capital of France is", "Rome is a city in"], [" Rome", "Italy"])
    for r, word in enumerate(["Rome", "Italy"]):
        assert tok.decode(b.input_ids[r][b.target_mask[r]]).strip() == word
        assert not b.target_mask[r][b.attention_mask[r] == 0].any()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("subject", ["India", " India", "India "])
def test_the_subject_is_the_whole_token_match_not_a_word_containing_it(kind, subject):
    """CounterFact: "The Indian Ocean lies south of {}, whose capital is" with subject "India"."""
    from sss_core.text import subject_last_token, subject_span
    tok = _tokenizer(kind)
    text = "The Indian Ocean lies south of India, whose capital is"
    begin = text.index("India,")
    assert subject_span(tok, text, subject) == (begin, begin + 5)
    idx = subject_last_token(tok, text, subject)
    ids = tok(text)["input_ids"]
    # token idx holds the subject's last character (a tokenizer may merge "India," into one token)
    assert tok.decode(ids[:idx + 1], skip_special_tokens=True).startswith(text[:begin + 5])
    assert len(tok.decode(ids[:idx], skip_special_tokens=True)) < begin + 5
    # the template's slot decides when the data has a template
    slot = "The Indian Ocean lies south of {}, whose capital is".index("{}")
    assert subject_last_token(tok, text, subject, slot=slot) == idx


def test_subject_location_takes_the_last_whole_token_match_and_the_slot_first(default_lm):
    from sss_core.text import subject_span, template_slot
    tok = default_lm.tok
    text = "France is big; the capital of France is"
    assert subject_span(tok, text, "France") == (text.rindex("France"), text.rindex("France") + 6)
    assert subject_span(tok, text, "France", slot=0) == (0, 6)  # a template "{} is big; ..." says the first
    assert template_slot("{} is big; the capital of France is", text, "France") == 0
    from sss_core.errors import RequestError
    with pytest.raises(RequestError, match="template"):
        template_slot("{} is small", text, "France")
    with pytest.raises(RequestError, match="does not occur"):
        subject_span(tok, text, "france")  # case as given
