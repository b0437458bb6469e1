"""Text in, tensors out, written once: joining prompt and target, right padding, the causal forward.

Every text meets the tokenizer in ``text_ids`` (``n_tokens`` counts it): it refuses text holding a
special token of the tokenizer (``check_plain``) and keeps only the text's own positions (a leading
BOS stays; an EOS a post-processor appends is dropped), so predictions, embeddings, lambda_max and
the editors' inputs all read the text itself.

Every batch in the project is right-padded: a causal model's real tokens never attend to the
padding after them, so the pad id does not matter and position ids need no shifting.

Example:
    >>> b = encode_pairs(tok, ["The capital of France is"], ["Paris"])
    >>> nll = target_nll(forward_logits(model, b), b)          # (batch,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import RequestError


def pad_id(tok) -> int:
    """The tokenizer's pad id, or 0 when it has none (right padding is never attended to)."""
    return tok.pad_token_id if tok.pad_token_id is not None else 0


def right_pad(rows: Sequence[Sequence[int]], pad: int, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows of any lengths -> (input_ids (batch, tokens), attention_mask (batch, tokens)).

    Each row's ids come first, then ``pad`` up to the longest row; the mask is 1 on the real
    tokens. ValueError for no rows.
    """
    if not rows:
        raise ValueError("no rows to pad")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[r, :len(row)] = 1
    return ids.to(device), mask.to(device)


@dataclass(frozen=True)
class PairBatch:
    """Right-padded (prompt, target) rows for teacher forcing, with the target tokens marked."""

    input_ids: torch.Tensor  # (batch, tokens) prompt ids then target ids, right-padded
    attention_mask: torch.Tensor  # (batch, tokens) 1 on real tokens
    target_mask: torch.Tensor  # (batch, tokens) True where the token belongs to the target

    @property
    def predict_mask(self) -> torch.Tensor:
        """(batch, tokens-1): True where logits[:, t] predicts a target token input_ids[:, t+1]."""
        return self.target_mask[:, 1:]


def join_parts(prompt: str, target: str) -> tuple[str, str]:
    """``(prompt, target)`` as they are joined: one space between them, whatever was typed.

    A prompt's trailing spaces and a target's leading spaces are dropped, so ``" Rome"`` and
    ``"Rome"`` (and ``"... is "``) give the same text; the separating space is added only where it
    is missing, as the reference implementations do (ROME's ``compute_v``, EasyEdit).

    Example:
        >>> join_parts("The capital of France is ", " Rome")
        ('The capital of France is', ' Rome')
    """
    return prompt.rstrip(" "), " " + target.lstrip(" ")


def joined_text(prompt: str, target: str) -> str:
    """The one string a model reads for ``prompt`` followed by ``target`` (see ``join_parts``)."""
    head, tail = join_parts(prompt, target)
    return head + tail


def special_texts(tok) -> tuple[str, ...]:
    """The special tokens of ``tok`` as text (BOS, EOS, pad, unk, and every added token marked
    special, e.g. ``"<|endoftext|>"``, ``"<s>"``, ``"</s>"``), longest first; blank ones left out."""
    found = set(getattr(tok, "all_special_tokens", ()) or ())
    decoder = getattr(tok, "added_tokens_decoder", None) or {}
    found |= {str(getattr(t, "content", t)) for t in decoder.values() if getattr(t, "special", False)}
    return tuple(sorted((t for t in found if isinstance(t, str) and t.strip()), key=lambda t: (-len(t), t)))


def check_plain(tok, text: str) -> str:
    """``text`` itself, when it contains none of ``tok``'s special tokens (see ``special_texts``).

    A special token written in a prompt, target or probe is read by the tokenizer as that control
    token, not as the characters typed (a target ``"<|endoftext|>"`` would be trained as an
    end-of-text token, and a post-processor's trimming would then drop it), so it is refused.

    Raises:
        RequestError: ``"'<|endoftext|>' is a special token of the model's tokenizer: in a prompt,
            target or probe it would be read as that token, not as text; remove it"``.
    """
    for special in special_texts(tok):
        if special in text:
            raise RequestError(f"{special!r} is a special token of the model's tokenizer: in a prompt, target or "
                               "probe it would be read as that token, not as text; remove it")
    return text


def _without_trailing_specials(tok, ids: list[int]) -> list[int]:
    """``ids`` less the special tokens at their end (the fallback of ``_own_end``)."""
    special = set(getattr(tok, "all_special_ids", ()) or ())
    end = len(ids)
    while end > 0 and ids[end - 1] in special:
        end -= 1
    return ids[:end]


def _find(ids: list[int], part: list[int]) -> int:
    """Index of the first occurrence of ``part`` in ``ids``; -1 if none."""
    for i in range(len(ids) - len(part) + 1):
        if ids[i:i + len(part)] == part:
            return i
    return -1


def _own_end(tok, text: str, ids: list[int]) -> int:
    """How many of ``ids`` (``tok(text)["input_ids"]``) to keep: all but the special tokens the
    tokenizer's post-processor appended after the text's own tokens (an EOS, a [SEP])."""
    special = set(getattr(tok, "all_special_ids", ()) or ())
    if not ids or ids[-1] not in special:
        return len(ids)
    own = list(tok(text, add_special_tokens=False)["input_ids"])
    if own:
        at = _find(ids, own)
        if at >= 0:
            return at + len(own)
    else:  # no tokens of its own: what follows the own tokens of a one-letter text is appended
        full, one = list(tok("a")["input_ids"]), list(tok("a", add_special_tokens=False)["input_ids"])
        at = _find(full, one) if one else -1
        if at >= 0:
            return max(0, len(ids) - (len(full) - at - len(one)))
    return len(_without_trailing_specials(tok, ids))


def _encode(tok, text: str, offsets: bool = False, specials: bool = False
            ) -> tuple[list[int], list[tuple[int, int]] | None]:
    """The one place a text meets the tokenizer: (ids, character spans or None) of ``text`` as the
    model reads it (see ``text_ids``); spans only when ``offsets`` (None for a slow tokenizer)."""
    if not specials:
        check_plain(tok, text)
    with_offsets = offsets and getattr(tok, "is_fast", False)
    enc = tok(text, return_offsets_mapping=True) if with_offsets else tok(text)
    ids = list(enc["input_ids"])
    n = _own_end(tok, text, ids)
    spans = [tuple(o) for o in enc["offset_mapping"][:n]] if with_offsets else None
    return ids[:n], spans


def text_ids(tok, text: str, max_length: int | None = None, specials: bool = False) -> list[int]:
    """Ids of ``text`` as the model reads it: its own tokens, after what the tokenizer puts in front
    (a BOS stays), without what a post-processor appends (an EOS or [SEP] after the text is dropped).

    So the last id is the text's own last token, the position that predicts what follows it, and
    every id is one of the text's positions or the leading BOS. Every place in sss_core that turns
    text into ids for the model goes through here (predictions, embeddings, lambda_max per
    sentence, the editors' inputs, length checks). ``max_length`` keeps the first that many ids.
    ``specials=True`` lets special-token text through as those tokens (corpus samples only).

    Returns a list of ints (tokens,).

    Raises:
        RequestError: ``text`` contains a special token of ``tok`` (see ``check_plain``), unless ``specials``.

    Example:
        >>> text_ids(llama_tok, "Paris is in")   # [<s>, ...], no </s> even where the tokenizer appends one
    """
    ids, _ = _encode(tok, text, specials=specials)
    return ids if max_length is None else ids[:max_length]


def n_tokens(tok, text: str) -> int:
    """How many tokens the model reads for ``text``: ``len(text_ids(tok, text))`` (a leading BOS
    counts, an appended EOS does not). Raises RequestError as ``text_ids`` does."""
    return len(text_ids(tok, text))


def target_ids(tok, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Ids of the prompt and of the target as the model reads them in ``joined_text(prompt, target)``.

    The joint string is tokenised once (with the tokenizer's own special tokens: a BOS stays in
    front of the prompt) and split where its ids stop agreeing with the prompt's own ids, so the
    boundary tokens are the ones the model sees and nothing sits between prompt and target: no
    doubled space, and no special token a post-processor appends (an EOS after the prompt or the
    target is dropped; see ``text_ids``). Works for byte-level BPE, sentencepiece-style tokenizers
    with a BOS, tokenizers whose post-processor adds special tokens, and tokenizers without any.
    Where a token would straddle the boundary, it counts as the target's first token.

    Raises:
        RequestError: the prompt or the target contains a special token of ``tok`` (``check_plain``).

    Example:
        >>> target_ids(tok, "The capital of France is", " Rome") == target_ids(tok, "The capital of France is", "Rome")
        True
    """
    head, tail = join_parts(prompt, target)
    p = text_ids(tok, head)
    joint = text_ids(tok, head + tail)
    k = 0
    while k < min(len(p), len(joint)) and p[k] == joint[k]:
        k += 1
    return joint[:k], joint[k:]


def _token_spans(tok, text: str) -> list[tuple[int, int]] | None:
    """Character span (begin, end) of each token of ``text_ids(tok, text)`` (special tokens: (0, 0));
    None for a tokenizer without offsets (a slow one). RequestError as ``text_ids``."""
    return _encode(tok, text, offsets=True)[1]


def _whole_token(text: str, spans: list[tuple[int, int]] | None, begin: int, end: int) -> bool:
    """Whether ``text[begin:end]`` starts and ends on token boundaries (a token's leading space
    does not count: " India" starts where "India" does). Without spans: on word boundaries."""
    if spans is None:
        before = text[begin - 1] if begin > 0 else " "
        after = text[end] if end < len(text) else " "
        return not (before.isalnum() or after.isalnum())
    starts, ends = set(), set()
    for a, b in spans:
        if b <= a:
            continue
        while a < b and text[a].isspace():
            a += 1
        starts.add(a)
        ends.add(b)
    return begin in starts and end in ends


def subject_span(tok, text: str, subject: str, start: int = 0, slot: int | None = None) -> tuple[int, int]:
    """Character span (begin, end) of the subject in ``text``, where the record puts it.

    ``subject`` is matched as typed, less surrounding spaces (case as given). ``slot`` is where a
    template's ``"{}"`` put it (e.g. CounterFact's "The Indian Ocean lies south of {}, whose
    capital is"): the subject must stand there. Without a slot, the last occurrence at or after
    ``start`` that is a whole-token match (ROME's reference code takes the last match), else the
    last occurrence of the characters.

    Raises:
        RequestError: the subject is empty or does not occur (at the slot).
    """
    subject = subject.strip()
    if not subject:
        raise RequestError("the subject is empty: type the words of the prompt the fact is about")
    if slot is not None:
        if text[slot:slot + len(subject)] != subject:
            raise RequestError(f"the subject {subject!r} is not where the template puts it in {text[start:]!r}")
        return slot, slot + len(subject)
    found, at = [], text.find(subject, start)
    while at >= 0:
        found.append(at)
        at = text.find(subject, at + 1)
    if not found:
        raise RequestError(f"the subject {subject!r} does not occur in the prompt {text[start:]!r}; "
                           "type it exactly as it appears in the prompt")
    spans = _token_spans(tok, text)
    whole = [b for b in found if _whole_token(text, spans, b, b + len(subject))]
    begin = (whole or found)[-1]
    return begin, begin + len(subject)


def subject_last_token(tok, text: str, subject: str, start: int = 0, slot: int | None = None) -> int:
    """Index in ``text_ids(tok, text)`` (a leading BOS included) of the token holding the
    subject's last character, the subject located by ``subject_span``.

    Example:
        >>> subject_last_token(tok, "The Indian Ocean lies south of India, whose capital is", "India")
        ... # the " India" token, not "Indian"
    """
    _, end = subject_span(tok, text, subject, start, slot)
    spans = _token_spans(tok, text)
    if spans is not None:
        hits = [i for i, (a, b) in enumerate(spans) if b > a and a < end]
        if hits:
            return hits[-1]
    return len(text_ids(tok, text[:end])) - 1


def template_slot(template: str | None, prompt: str, subject: str | None) -> int | None:
    """Where ``template``'s ``"{}"`` puts the subject in ``prompt``; None without a template.

    Raises:
        RequestError: the template has no ``"{}"``, or filled with the subject it is not the prompt.
    """
    if template is None or subject is None:
        return None
    if "{}" not in template:
        raise RequestError(f"the template {template!r} has no '{{}}' where the subject goes")
    if template.replace("{}", subject.strip(), 1) != prompt:
        raise RequestError(f"the template {template!r} filled with {subject.strip()!r} is not the prompt {prompt!r}")
    return template.index("{}")


def encode_pairs(tok, prompts: Sequence[str], targets: Sequence[str],
                 device: torch.device | str = "cpu", max_length: int | None = None) -> PairBatch:
    """Batch ``joined_text(prompt, target)`` rows for teacher forcing (see ``target_ids``).

    Raises RequestError when a row is longer than ``max_length`` tokens (the model's context).

    Example:
        >>> b = encode_pairs(tok, ["The capital of France is"], ["Paris"])
        >>> b.input_ids[b.target_mask]     # the ids of " Paris"
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    rows = [target_ids(tok, p, t) for p, t in zip(prompts, targets)]
    width = max(len(p) + len(t) for p, t in rows)
    if max_length is not None and width > max_length:
        longest = max(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
        raise RequestError(f"prompt + target is {width} tokens but the model reads at most {max_length}: "
                           f"shorten {prompts[longest][:60]!r}...")
    return pair_batch(rows, pad_id(tok), device)


def pair_batch(rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad: int,
               device: torch.device | str = "cpu") -> PairBatch:
    """(prompt ids, target ids) per row -> a right-padded PairBatch with the target ids marked.

    A row's target may be empty (a prompt-only row: nothing marked).
    """
    ids, attn = right_pad([list(p) + list(t) for p, t in rows], pad)
    tmask = torch.zeros(ids.shape, dtype=torch.bool)
    for r, (p, t) in enumerate(rows):
        tmask[r, len(p):len(p) + len(t)] = True
    return PairBatch(ids.to(device), attn.to(device), tmask.to(device))


def max_positions(model) -> int | None:
    """The longest input the model accepts (None when its config does not say)."""
    cfg = model.config
    return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)


def encode_for(model, tok, prompts: Sequence[str], targets: Sequence[str]) -> PairBatch:
    """``encode_pairs`` on the model's input device, checked against its context length."""
    return encode_pairs(tok, prompts, targets, input_device(model), max_positions(model))


def input_device(model) -> torch.device:
    """Where the model's input ids must be (its input embedding's device)."""
    return model.get_input_embeddings().weight.device


def forward_logits(model, batch) -> torch.Tensor:
    """The model on a right-padded batch (anything with ``input_ids`` and ``attention_mask``).

    input_ids, attention_mask: (batch, tokens) -> logits (batch, tokens, vocab). Gradients flow
    as the caller's grad mode allows.
    """
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def forward_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The model on right-padded rows, with every layer's hidden states.

    input_ids, attention_mask: (batch, tokens) -> (logits (batch, tokens, vocab), hidden_states:
    a tuple of n_layers + 1 tensors (batch, tokens, d_model), the input embeddings first).
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return out.logits, out.hidden_states


def target_nll(logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """Per-example mean NLL of the target tokens (paper Eq. 8).

    logits: (batch, tokens, vocab) -> (batch,)
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, batch.input_ids[:, 1:, None])[..., 0]  # (batch, tokens-1)
    m = batch.predict_mask.float()
    return (nll * m).sum(1) / m.sum(1).clamp(min=1)


def kl_loc(pre_logits: torch.Tensor, post_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of KL(pre || post), in nats: the locality loss L_loc of MEND (Mitchell et al., 2022).

    pre_logits, post_logits: (batch, tokens, vocab); mask: (batch, tokens), 1 on real tokens -> scalar.
    Computed in float32 whatever the logits' dtype.
    """
    pre = torch.log_softmax(pre_logits.float(), -1)
    post = torch.log_softmax(post_logits.float(), -1)
    kl = (pre.exp() * (pre - post)).sum(-1)  # (batch, tokens)
    return (kl * mask).sum() / mask.sum().clamp(min=1)
