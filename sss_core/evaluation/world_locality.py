"""World locality: score every fact of the world before and after an edit (issue 26, item 1).

The sampled locality of a case reads a few neighbour prompts; world locality reads all of them.
For each fact ``(subject, relation, object)`` the model is read on ``fact.prompt()`` (the relation's
first template) with the fact's object teacher-forced after it, once unedited and once with the
edit applied. Per fact it keeps the top-1 next token after the prompt (its id and text) and
P(old answer) = P(object | prompt), the product of the object tokens' probabilities.

A fact's top answer *changed* when its top-1 token id differs after the edit (the argmax
comparison of EasyEdit's locality). The facts that *should change* are the edited fact itself: a
fact one of whose prompts (any template) is the request's prompt, or whose subject is the
request's subject and whose relation is the edited relation (given, or the relation of the fact the
prompt names). No other fact counts as logically implied (e.g. ``Paris capital_of France`` stays
among the facts that should not change when France's capital is edited): the per-relation summary
shows where such facts moved. World locality = the share of the facts that should not change whose
top answer did not change.

The unedited model's answers (``WorldBaseline``) do not depend on the edit: ``baseline_for``
computes them once per model and keeps them while the model's weights are the same.

Example:
    >>> facts = default_world().facts
    >>> edit = make_editor("ft-l").edit(lm.model, lm.tok, [request])
    >>> wl = world_locality(lm.model, lm.tok, facts, edit, request)   # ~2.4 s twice on the shipped model
    >>> wl.world_locality, wl.n_damaged, wl.as_dict(max_facts=20)["by_relation"]["capital"]
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from ..editors.base import Edit
from ..kept_readings import KeptReadings
from ..locks import model_lock, reads_model
from ..text import encode_for, forward_logits, joined_text
from ..types import EditRequest
from ..world.generate import Fact
from ..world.relations import RELATIONS_BY_ID

BATCH = 64  # facts per forward pass


@dataclass(frozen=True)
class FactReading:
    """The model's answers to the world's facts: one entry per fact, in the facts' order."""

    top_ids: tuple[int, ...]  # top-1 next-token id after each fact's prompt
    top_texts: tuple[str, ...]  # that token, decoded
    p_object: tuple[float, ...]  # P(object | prompt), a probability in [0, 1]


@reads_model
@torch.no_grad()
def read_facts(model: nn.Module, tok, facts: Sequence[Fact], batch_size: int = BATCH) -> FactReading:
    """Read ``model`` on every fact: top-1 next token after ``fact.prompt()`` and P(object | prompt).

    One teacher-forced pass over (prompt, object) per batch of ``batch_size`` facts: the logits at the
    prompt's last token give the top-1 answer, the object tokens' log-probabilities their product.
    The batches hold facts of similar length (a quarter less padding on the built-in world); the
    result is in the order of ``facts``. Runs under the model's lock. Raises RequestError
    (``text.encode_for``) for a fact whose text holds a special token or is longer than the model's
    context; ValueError for no facts.
    """
    if not facts:
        raise ValueError("no facts to read")
    order = sorted(range(len(facts)), key=lambda i: len(tok(joined_text(facts[i].prompt(), facts[i].object))
                                                           ["input_ids"]))
    ids: list[int] = []
    probs: list[float] = []
    for start in range(0, len(order), batch_size):
        chunk = [facts[i] for i in order[start:start + batch_size]]
        batch = encode_for(model, tok, [f.prompt() for f in chunk], [f.object for f in chunk])
        logp = torch.log_softmax(forward_logits(model, batch)[:, :-1].float(), -1)  # (rows, tokens-1, vocab)
        mask = batch.predict_mask  # (rows, tokens-1): positions predicting an object token
        first = mask.float().argmax(1)  # (rows,): the prompt's last position
        rows = torch.arange(len(chunk), device=logp.device)
        ids += logp[rows, first].argmax(-1).tolist()
        tok_lp = logp.gather(-1, batch.input_ids[:, 1:, None])[..., 0] * mask
        probs += tok_lp.sum(1).exp().tolist()
    back = sorted(range(len(order)), key=order.__getitem__)  # position in ``order`` of each fact
    ids, probs = [ids[k] for k in back], [probs[k] for k in back]
    return FactReading(tuple(ids), tuple(tok.decode([i]) for i in ids), tuple(probs))


@dataclass(frozen=True)
class WorldBaseline:
    """The unedited model's reading of ``facts`` (``read_facts``), made once per model."""

    facts: tuple[Fact, ...]
    before: FactReading
    seconds: float  # wall time of the reading

    @cached_property
    def prompt_index(self) -> dict[str, int]:
        """Every fact's index under each of its prompts (all templates of its relation), stripped."""
        out: dict[str, int] = {}
        for i, f in enumerate(self.facts):
            for t in RELATIONS_BY_ID[f.relation].templates:
                out.setdefault(t.format(f.subject).strip(), i)
        return out


def world_baseline(model: nn.Module, tok, facts: Sequence[Fact]) -> WorldBaseline:
    """Read the (unedited) model on ``facts`` now; see ``read_facts`` for what and what it raises."""
    start = time.perf_counter()
    before = read_facts(model, tok, facts)
    return WorldBaseline(tuple(facts), before, time.perf_counter() - start)


_BASELINES = KeptReadings(max_cost=4)  # a few (facts, weights) per model


def baseline_for(model: nn.Module, tok, facts: Sequence[Fact]) -> WorldBaseline:
    """``world_baseline`` of ``model`` on ``facts``, kept per model object while its weights are the same.

    Call it while the model is unedited (it reads the model as it is). The kept reading is checked
    against ``kept_readings.weights_key``: a model whose weights changed since (an edit kept applied)
    is read again. The reading holds the model's lock (``read_facts``); two sessions that ask at once
    before it is kept may both read.
    """
    facts = tuple(facts)
    return _BASELINES.read(model, ("world", tok, facts), lambda: world_baseline(model, tok, facts))


@dataclass(frozen=True)
class FactChange:
    """One fact read before and after an edit."""

    subject: str
    relation: str
    prompt: str  # fact.prompt(): the relation's first template
    object: str  # the world's answer (the "old answer")
    before: str  # top-1 next token before the edit (decoded)
    after: str  # top-1 next token with the edit applied
    p_before: float  # P(object | prompt) before, in [0, 1]
    p_after: float  # P(object | prompt) with the edit applied
    changed: bool  # the top-1 token id differs
    should_change: bool  # this is the edited fact

    @property
    def direction(self) -> str:
        """How a changed top answer moved: "to the answer" (after, not before, it starts the world's answer,
        e.g. "the" -> "M" for Moscow), "away from the answer" (before, not after), else "between others".
        A change counts against world locality either way (EasyEdit's argmax comparison); this says which."""
        def starts(token: str) -> bool:
            return bool(token.strip()) and self.object.strip().startswith(token.strip())
        if starts(self.after) and not starts(self.before):
            return "to the answer"
        if starts(self.before) and not starts(self.after):
            return "away from the answer"
        return "between others"

    def as_dict(self) -> dict:
        """The fact as JSON-ready fields (probabilities rounded to 6 decimals; the direction of a change)."""
        return {"subject": self.subject, "relation": self.relation, "prompt": self.prompt, "object": self.object,
                "before": self.before, "after": self.after, "p_before": round(self.p_before, 6),
                "p_after": round(self.p_after, 6), **({"direction": self.direction} if self.changed else {})}


@dataclass(frozen=True)
class WorldLocality:
    """Every world fact before and after one edit, and what that says about the edit's locality."""

    facts: tuple[FactChange, ...]  # one per world fact, in the world's order
    seconds: float  # wall time of reading the edited model (the baseline's reading not included)

    @cached_property
    def others(self) -> tuple[FactChange, ...]:
        """The facts that should not change."""
        return tuple(f for f in self.facts if not f.should_change)

    @cached_property
    def damaged(self) -> tuple[FactChange, ...]:
        """The facts that should not change whose top answer changed, in the world's order."""
        return tuple(f for f in self.others if f.changed)

    @property
    def n_damaged(self) -> int:
        """How many facts that should not change did change."""
        return len(self.damaged)

    @property
    def world_locality(self) -> float:
        """Share of the facts that should not change whose top-1 answer did not change, in [0, 1];
        NaN when every fact should change."""
        return 1.0 - self.n_damaged / len(self.others) if self.others else math.nan

    def by(self, field: str) -> dict[str, tuple[int, int]]:
        """(damaged, total) over the facts that should not change, per ``field`` ("relation" or
        "subject"), keys in the world's order of first appearance."""
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for f in self.others:
            counts = out[getattr(f, field)]
            counts[0] += f.changed
            counts[1] += 1
        return {k: (d, n) for k, (d, n) in out.items()}

    def as_dict(self, max_facts: int | None = None) -> dict:
        """Strict-JSON-ready summary: the counts, world locality, the edited facts, damage per relation
        (every relation) and per subject (damaged subjects only), and the damaged facts (the first
        ``max_facts`` of them when given; ``damaged_listed`` says how many are listed)."""
        others = self.others
        listed = self.damaged if max_facts is None else self.damaged[:max_facts]

        def mean(values: list[float]) -> float | None:
            return round(sum(values) / len(values), 6) if values else None

        return {"world_locality": None if math.isnan(self.world_locality) else self.world_locality,
                "facts": len(self.facts), "should_change": len(self.facts) - len(others), "others": len(others),
                "damaged": self.n_damaged, "seconds": round(self.seconds, 3),
                "mean_p_object_before": mean([f.p_before for f in others]),
                "mean_p_object_after": mean([f.p_after for f in others]),
                "edited_facts": [{**f.as_dict(), "changed": f.changed} for f in self.facts if f.should_change],
                "by_relation": {k: {"damaged": d, "total": n} for k, (d, n) in self.by("relation").items()},
                "by_subject": {k: {"damaged": d, "total": n} for k, (d, n) in self.by("subject").items() if d},
                "damaged_listed": len(listed), "damaged_facts": [f.as_dict() for f in listed]}


def should_change(baseline: WorldBaseline, request: EditRequest, relation: str | None = None) -> list[bool]:
    """Per fact of ``baseline``: whether it is the fact ``request`` edits.

    That is a fact with a prompt (any template of its relation) equal to the request's prompt
    (leading and trailing spaces aside), or one whose subject is ``request.subject`` and whose
    relation is ``relation`` (when None: the relation of the fact the prompt names, if any).
    """
    named = baseline.prompt_index.get(request.prompt.strip())
    if relation is None and named is not None:
        relation = baseline.facts[named].relation
    subject = (request.subject or "").strip()
    return [i == named or (bool(subject) and f.subject == subject and f.relation == relation)
            for i, f in enumerate(baseline.facts)]


def world_locality(model: nn.Module, tok, facts: Sequence[Fact], edit: Edit, request: EditRequest,
                   baseline: WorldBaseline | None = None, relation: str | None = None) -> WorldLocality:
    """Score every fact of ``facts`` before and after ``edit`` (an edit of ``request``, not applied).

    ``baseline``: the unedited model's reading of ``facts`` (default ``baseline_for(model, tok,
    facts)``, cached per model: about 2.4 s on the shipped model on one CPU thread the first time).
    The edit is applied for one reading of ``edit.model`` (the same cost) and reverted, whatever
    happens, all under the model's lock; the model is left as it was. ``relation``: the edited
    relation when known (e.g. ``EditCase.relation``), see ``should_change``.
    Raises ValueError if ``baseline`` was made on other facts or ``facts`` is empty; RuntimeError if
    the edit is already applied; RequestError as ``read_facts`` does.
    """
    facts = tuple(facts)
    with model_lock(model):
        baseline = baseline if baseline is not None else baseline_for(model, tok, facts)
        if baseline.facts != facts:
            raise ValueError("the baseline was read on other facts than these")
        start = time.perf_counter()
        with edit:
            after = read_facts(edit.model, tok, facts)
        seconds = time.perf_counter() - start
    before, edited = baseline.before, should_change(baseline, request, relation)
    return WorldLocality(tuple(
        FactChange(f.subject, f.relation, f.prompt(), f.object, before.top_texts[i], after.top_texts[i],
                   before.p_object[i], after.p_object[i], before.top_ids[i] != after.top_ids[i], edited[i])
        for i, f in enumerate(facts)), seconds)


__all__ = ["FactChange", "FactReading", "WorldBaseline", "WorldLocality", "baseline_for", "read_facts",
           "should_change", "world_baseline", "world_locality"]
