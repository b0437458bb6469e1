"""Edit cases of the world: counterfactual edits with every probe group of the paper's study.

Example:
    >>> world = build_world(0)
    >>> case = world_cases(world, "test")[0]
    >>> [p.group for p in case.probes]
    ['paraphrase', 'paraphrase', 'neighbour', ...]
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError
from ..jsonio import to_json
from ..types import GROUPS, EditCase, EditRequest, Probe
from .generate import Fact, World, build_world
from .relations import ONE_HOP, RELATIONS_BY_ID, REVERSED

SPLITS = {"train": (0.0, 0.6), "validation": (0.6, 0.7), "test": (0.7, 1.0)}
MAX_PER_GROUP = 2

# Export names of the probe groups, as in EasyEdit/KnowEdit records.
EXPORT_NAMES = {"neighbour": "Neighbor", "pre_neighbour": "Pre_Neighbor", "post_neighbour": "Post_Neighbor",
                "distract_neighbour": "Distract_Neighbor", "unrelated_attribute": "Unrelated_Attribute",
                "subject_replace": "Subject_Aliasing", "reversed_relation": "Reversed_Relation",
                "one_hop": "One_Hop"}


def _prompt(relation: str, subject: str, template: int = 0) -> str:
    """The prompt of ``relation`` about ``subject`` in template number ``template``."""
    return RELATIONS_BY_ID[relation].templates[template].format(subject)


def make_case(world: World, fact: Fact, target_new: str, rng: random.Random, case_id: str) -> EditCase:
    """All probes for editing ``fact`` to ``target_new``."""
    s, r, o = fact.subject, fact.relation, fact.object
    prompt = _prompt(r, s)
    probes = [Probe(t.format(s), target_new, "paraphrase") for t in RELATIONS_BY_ID[r].heldout_templates]
    others = [f for f in world.facts_by_relation[r] if f.subject != s]

    def pick(facts: list[Fact], group: str) -> list[Probe]:
        chosen = rng.sample(facts, min(MAX_PER_GROUP, len(facts)))
        return [Probe(_prompt(r, f.subject), f.object, group) for f in chosen]

    probes += pick(others, "neighbour")
    pre = pick([f for f in others if f.object == o], "pre_neighbour")
    probes += pre
    probes += pick([f for f in others if f.object == target_new], "post_neighbour")
    for p in pre or probes[2:3]:
        probes.append(Probe(f"{prompt} {target_new}. {p.prompt}", p.answer, "distract_neighbour"))
    attrs = [f for f in world.facts_by_subject[s] if f.relation != r]
    probes += [Probe(_prompt(f.relation, s), f.object, "unrelated_attribute")
               for f in rng.sample(attrs, min(3, len(attrs)))]
    probes += [Probe(_prompt(r, alias), target_new, "subject_replace") for alias in world.aliases.get(s, ())]
    if r in REVERSED:
        probes.append(Probe(_prompt(REVERSED[r], target_new), s, "reversed_relation"))
    override = {(s, r): target_new}
    for first, second, template in ONE_HOP:
        if first == r:  # the edited fact is the first hop
            answer = world.one_hop_answer(s, first, second, override)
            if answer is not None:
                probes.append(Probe(template.format(s), answer, "one_hop"))
        if second == r:  # the edited fact is the second hop, reached from other subjects
            via = [f for f in world.facts_by_relation[first] if f.object == s][:1]
            probes += [Probe(template.format(f.subject), target_new, "one_hop") for f in via]
    request = EditRequest(prompt, target_new, subject=s, ground_truth=o, case_id=case_id)
    return EditCase(request, tuple(probes), relation=r)


def world_cases(world: World | None = None, split: str = "test", seed: int = 0) -> list[EditCase]:
    """The edit cases of one split ("train", "validation", "test", or "all"), deterministic in seed."""
    world = world or build_world(0)
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join((*SPLITS, 'all'))}")
    rng = random.Random(seed)
    order = list(range(len(world.facts)))
    rng.shuffle(order)
    lo, hi = SPLITS.get(split, (0.0, 1.0))
    chosen = order[round(lo * len(order)):round(hi * len(order))]
    cases = []
    for i in chosen:
        fact = world.facts[i]
        case_rng = random.Random(f"{seed}-{i}")  # each case is the same whichever split asks
        target = case_rng.choice([o for o in world.objects(fact.relation) if o != fact.object])
        cases.append(make_case(world, fact, target, case_rng, case_id=f"world-{i}"))
    return cases


def to_record(case: EditCase) -> dict:
    """An EasyEdit CounterFact-style record, with KnowEdit-style locality/portability groups."""
    req = case.request
    para = [p.prompt for p in case.group("paraphrase")]
    neigh = case.group("neighbour")
    rec = {"case_id": req.case_id, "prompt": req.prompt, "subject": req.subject,
           "target_new": req.target_new, "ground_truth": req.ground_truth, "relation_id": case.relation,
           "rephrase_prompt": para[0] if para else None, "rephrase_prompts": para,
           "locality_prompt": neigh[0].prompt if neigh else None,
           "locality_ground_truth": neigh[0].answer if neigh else None,
           "locality": {}, "portability": {}}
    for group, name in EXPORT_NAMES.items():
        probes = case.group(group)
        if probes:
            kind = "portability" if group in ("subject_replace", "reversed_relation", "one_hop") else "locality"
            rec[kind][name] = [{"prompt": p.prompt, "ground_truth": p.answer} for p in probes]
    return rec


def from_record(rec: dict, on_bad_group: Callable[[DataError, str], None] | None = None) -> EditCase:
    """The inverse of ``to_record``.

    ``on_bad_group(error, field)`` is called for a malformed optional probe group (the paraphrases,
    or one named ``locality`` / ``portability`` group), which is then left out; without it the
    error is raised. An empty or null group is no probe.

    Raises:
        DataError: naming the field (``'prompt'``, ``'locality.Neighbor[0]'``, ...) that is missing
            or malformed: the record is not an object, the prompt or target is not a non-empty
            string, or (without ``on_bad_group``) a probe group is malformed.
    """
    if not isinstance(rec, dict):
        raise DataError(f"a world record is a JSON object, got a {type(rec).__name__}")
    prompt, target = _required_text(rec, "prompt"), _required_text(rec, "target_new")
    req = EditRequest(prompt, target, subject=_optional_text(rec, "subject"),
                      ground_truth=_optional_text(rec, "ground_truth"), case_id=_optional_id(rec))

    def group(field: str, build: Callable[[], list[Probe]]) -> list[Probe]:
        try:
            return build()
        except DataError as exc:
            if on_bad_group is None:
                raise
            on_bad_group(exc, field)
            return []

    probes = group("rephrase_prompts", lambda: [Probe(p, target, "paraphrase")
                                                for p in _texts(rec, "rephrase_prompts")])
    by_name = {v: k for k, v in EXPORT_NAMES.items()}
    for kind in ("locality", "portability"):
        groups = rec.get(kind)
        if groups is None:
            continue
        if not isinstance(groups, dict):
            probes += group(kind, lambda kind=kind: _bad(kind, "must be an object of named probe lists"))
            continue
        for name, items in groups.items():
            probes += group(f"{kind}.{name}", lambda kind=kind, name=name, items=items:
                            _group_probes(f"{kind}.{name}", items, by_name.get(name), by_name))
    order = {g: i for i, g in enumerate(GROUPS)}
    probes.sort(key=lambda p: order[p.group])
    return EditCase(req, tuple(probes), relation=_optional_text(rec, "relation_id"))


def _bad(field: str, problem: str):
    """Raise DataError ``field 'FIELD' PROBLEM``."""
    raise DataError(f"field {field!r} {problem}")


def _required_text(rec: dict, field: str) -> str:
    """``rec[field]``, a non-empty string; DataError naming the field otherwise."""
    value = rec.get(field)
    if not isinstance(value, str) or not value.strip():
        _bad(field, "is missing" if field not in rec else f"must be a non-empty string, got {value!r:.60}")
    return value


def _optional_text(rec: dict, field: str) -> str | None:
    """``rec[field]`` when a non-empty string; absent, null or empty: None; another type: DataError."""
    value = rec.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        _bad(field, f"must be a string, got {value!r:.60}")
    return value


def _optional_id(rec: dict) -> str | None:
    """``rec["case_id"]`` as text (a string or a whole number), or None."""
    value = rec.get("case_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        _bad("case_id", f"must be a string or a whole number, got {value!r:.60}")
    return str(value)


def _texts(rec: dict, field: str) -> list[str]:
    """``rec[field]``: a list of non-empty strings (absent or null: none); DataError otherwise."""
    value = rec.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        _bad(field, "must be a list of non-empty strings")
    return value


def _group_probes(field: str, items, group: str | None, by_name: dict[str, str]) -> list[Probe]:
    """The probes of one named group: a list of {prompt, ground_truth} objects (null: none)."""
    if group is None:
        _bad(field, f"is not a known group; known: {', '.join(sorted(by_name))}")
    if items is None:
        return []
    if not isinstance(items, list):
        _bad(field, "must be a list of {prompt, ground_truth} objects")
    probes = []
    for j, item in enumerate(items):
        prompt = item.get("prompt") if isinstance(item, dict) else None
        answer = item.get("ground_truth") if isinstance(item, dict) else None
        if not (isinstance(prompt, str) and prompt.strip() and isinstance(answer, str) and answer.strip()):
            _bad(f"{field}[{j}]", "needs a non-empty 'prompt' and 'ground_truth'")
        probes.append(Probe(prompt, answer, group))
    return probes


def write_world(out: Path, seed: int = 0) -> dict[str, int]:
    """Write facts, the training corpus, one-hop cases and the edit splits as JSON under ``out``."""
    world = build_world(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "facts.json").write_text(to_json(
        [{"subject": f.subject, "relation": f.relation, "object": f.object} for f in world.facts], indent=True))
    (out / "aliases.json").write_text(to_json(world.aliases, indent=True))
    (out / "corpus.txt").write_text("\n".join(world.training_sentences()) + "\n")
    (out / "one_hop.json").write_text(to_json(
        [{"prompt": p, "answer": a} for p, a in world.one_hop_cases()], indent=True))
    counts = {"facts": len(world.facts)}
    for split in SPLITS:
        records = [to_record(c) for c in world_cases(world, split, seed)]
        (out / f"{split}.json").write_text(to_json(records, indent=True))
        counts[split] = len(records)
    return counts
