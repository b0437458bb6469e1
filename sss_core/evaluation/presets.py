"""Turn a typed request into a full EditCase: world facts get every probe group, others what is given.

Example:
    >>> case = case_for_request(EditRequest("The capital of France is", "Rome", "France"))
    >>> {p.group for p in case.probes} >= {"paraphrase", "neighbour", "reversed_relation"}
    True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

import torch

from ..editors.base import model_lock
from ..errors import RequestError
from ..text import text_ids
from ..types import EditCase, EditRequest, Probe
from ..world.generate import Fact, World, build_world
from ..world.records import make_case, world_cases
from ..world.relations import RELATIONS_BY_ID


@lru_cache(maxsize=4)
def default_world(seed: int = 0) -> World:
    """The built-in world (pure function of the seed, so caching it is safe)."""
    return build_world(seed)


@lru_cache(maxsize=4)
def _prompt_index(seed: int = 0) -> dict[str, Fact]:
    """Every world fact under each of its prompts (all templates), for ``world_fact_for``."""
    world = default_world(seed)
    return {t.format(f.subject): f for f in world.facts for t in RELATIONS_BY_ID[f.relation].templates}


def world_fact_for(prompt: str, seed: int = 0) -> Fact | None:
    """The world fact whose prompt (in any template) is exactly ``prompt``."""
    return _prompt_index(seed).get(prompt.strip())


def presets(split: str = "test", n: int = 50, seed: int = 0, real_first: bool = False) -> list[EditCase]:
    """The first ``n`` world edit cases of ``split``: the app's and the CLI's examples.

    With ``real_first``, the same ``n`` cases are reordered so that those about real countries and
    cities (``World.real_subjects``) come before those about generated people and companies, each in
    the split's own order: a reader recognises the first one at once.
    """
    world = default_world(seed)
    cases = world_cases(world, split, seed)[:n]
    if real_first:
        cases = sorted(cases, key=lambda c: c.request.subject not in world.real_subjects)  # stable
    return cases


@torch.no_grad()
def greedy_answer(lm, prompt: str, max_new_tokens: int = 3) -> str:
    """The model's own greedy continuation, used as the teacher-forced text of a locality probe.

    Only ``input_ids`` and ``attention_mask`` reach ``generate``: what a tokenizer adds beyond them
    (``token_type_ids`` from Pythia's and Falcon's) is not an input of a causal LM, and
    ``generate`` refuses any keyword the model's forward does not take. Raises RequestError when the
    model's next token ends the text (no answer to compare with).

    Reads the model under its lock (``editors.base.model_lock``), so another thread's edit, applied
    on the shared model while it holds the lock, is never read as the model's answer.
    """
    ids = torch.tensor([text_ids(lm.tok, prompt)], device=lm.device)  # (1, tokens), no appended EOS
    with model_lock(lm.model):
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=lm.tok.pad_token_id)
    text = lm.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    if not text:
        raise RequestError(f"the model ends the text after {prompt!r} (its next token is the end of text), so it has "
                           "no answer to compare: give a prompt that stops before its answer")
    return text


def case_for_request(request: EditRequest, paraphrases: Sequence[str] = (),
                     neighbour_prompts: Sequence[str] = (), lm=None) -> EditCase:
    """An EditCase for ``request``.

    If the prompt is a world fact, the case has every probe group of the world. Extra
    paraphrases are scored against the new target; extra neighbour prompts are scored for
    locality against the model's own greedy answer (which needs ``lm``; read under the model's
    lock, see ``greedy_answer``).
    """
    fact = world_fact_for(request.prompt)
    probes: list[Probe] = []
    if fact is not None:
        world_case = make_case(default_world(), fact, request.target_new, random.Random(request.prompt),
                               case_id=request.case_id)
        probes += [p for p in world_case.probes if p.group != "paraphrase" or p.prompt != request.prompt]
        relation = fact.relation
        request = EditRequest(request.prompt, request.target_new, request.subject or fact.subject,
                              request.ground_truth or fact.object, request.case_id)
    else:
        relation = None
    probes += [Probe(p, request.target_new, "paraphrase") for p in paraphrases]
    if neighbour_prompts and lm is None:
        raise ValueError("neighbour prompts need the model to read their current answers")
    probes += [Probe(p, greedy_answer(lm, p), "neighbour") for p in neighbour_prompts]
    return EditCase(request, tuple(probes), relation=relation)
