"""Load knowledge-editing data sets (EasyEdit formats, KnowEdit, the world) as EditCases.

Every format maps onto the probe groups of ``sss_core.types.GROUPS``:

=================  ==========================================================================
format             fields -> probe groups
=================  ==========================================================================
``zsre``           src/alt -> request; rephrase -> paraphrase; loc/loc_ans -> neighbour;
                   portability{New Question, New Answer} -> one_hop; "inverse question" ->
                   reversed_relation (answer: the subject); alter_subject_question ->
                   subject_replace (answer: alt)
``counterfact``    (EasyEdit flat) prompt/target_new -> request; rephrase_prompt -> paraphrase;
                   locality_prompt/locality_ground_truth -> neighbour
``rome``           (ROME nested CounterFact) requested_rewrite -> request; paraphrase_prompts ->
                   paraphrase; neighborhood_prompts (true answer = old target) -> pre_neighbour,
                   and each prepended with the edit sentence -> distract_neighbour;
                   attribute_prompts (true answer = new target) -> post_neighbour;
                   portability -> one_hop; alternative_subject -> subject_replace
``knowedit``       prompt/target_new -> request; rephrase(_prompt) -> paraphrase;
                   locality{Relation_Specificity -> unrelated_attribute, Forgetfulness ->
                   neighbour}; portability{Subject_Aliasing -> subject_replace, Reasoning ->
                   one_hop, Logical_Generalization -> reversed_relation}
``world``          the world's own export (``sss_core.world.records.to_record``)
=================  ==========================================================================

A file is read whole and checked record by record before anything is returned: a malformed
record raises DataError naming the file, the record index and the field; nothing is half-loaded.

Example:
    >>> cases = load_dataset("counterfact-train.json", limit=200)
    >>> cases[0].request.target_new, [p.group for p in cases[0].probes]
    ('piano', ['paraphrase', 'neighbour'])
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import DataError
from ..types import GROUPS, EditCase, EditRequest, Probe
from ..world.generate import World
from ..world.records import EXPORT_NAMES, from_record, world_cases

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
FORMATS = ("zsre", "counterfact", "rome", "knowedit", "world")
MAX_DISTRACT = 2  # distract-neighbours derived per ROME case (each costs one probe)

# KnowEdit group names -> ours. Logical_Generalization is mostly inverse/symmetric relations.
KNOWEDIT_GROUPS = {"Relation_Specificity": "unrelated_attribute", "Forgetfulness": "neighbour",
                   "Subject_Aliasing": "subject_replace", "Reasoning": "one_hop", "reasoning": "one_hop",
                   "Logical_Generalization": "reversed_relation",
                   **{v: k for k, v in EXPORT_NAMES.items()}}


class _Fields:
    """Typed access to one record's fields; every failure names the record and the field."""

    def __init__(self, rec: Any, index: int, source: str):
        self.source, self.index = source, index
        if not isinstance(rec, dict):
            self.fail(None, f"is a JSON {type(rec).__name__}, not an object")
        self.rec = rec

    def fail(self, field: str | None, problem: str):
        where = f"{self.source}: record {self.index}" + (f", field {field!r}" if field else "")
        raise DataError(f"{where} {problem}")

    def get(self, path: str, required: bool = True) -> Any:
        """The value at a dotted ``path`` ("requested_rewrite.target_new.str"), or None."""
        value: Any = self.rec
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                if required:
                    self.fail(path, "is missing")
                return None
            value = value[part]
        return value

    def text(self, path: str, required: bool = True) -> str | None:
        """A non-empty string (the first one if the value is a list of aliases)."""
        value = self.get(path, required)
        if value is None and not required:
            return None
        out = _first_text(value)
        if out is None:
            if not required:
                return None
            self.fail(path, f"must be a non-empty string, got {json.dumps(value)[:60]}")
        return out

    def texts(self, path: str) -> list[str]:
        """A string or list of strings (absent or null: empty)."""
        value = self.get(path, required=False)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        out = [_first_text(v) for v in items]
        if any(v is None for v in out):
            self.fail(path, "must be a string or a list of non-empty strings")
        return out

    def case_id(self, stem: str) -> str:
        value = self.rec.get("case_id")
        return f"{stem}-{self.index}" if value is None else str(value)


def _first_text(value: Any) -> str | None:
    """``value`` if a non-empty string, else the first such string of a (nested) alias list."""
    while isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, str) and value.strip() else None


def _request(f: _Fields, prompt: str, target: str, subject: str | None, truth: str | None,
             stem: str) -> EditRequest:
    if subject is not None and subject not in prompt:
        log.debug("%s record %d: subject %r is not in the prompt; dropped", f.source, f.index, subject)
        subject = None
    return EditRequest(prompt, target, subject=subject, ground_truth=truth, case_id=f.case_id(stem))


def _grouped(f: _Fields, names: dict[str, str]) -> list[Probe]:
    """KnowEdit-style ``locality`` / ``portability`` dicts: {name: [{prompt, ground_truth}, ...]}."""
    probes = []
    for kind in ("locality", "portability"):
        groups = f.get(kind, required=False)
        if groups is None:
            continue
        if not isinstance(groups, dict):
            f.fail(kind, "must be an object of named probe lists")
        for name, items in groups.items():
            if name not in names:
                f.fail(f"{kind}.{name}", f"is not a known group; known: {', '.join(sorted(names))}")
            for j, item in enumerate(items if isinstance(items, list) else [items]):
                field = f"{kind}.{name}[{j}]"
                item = item if isinstance(item, dict) else {}
                prompt, answer = _first_text(item.get("prompt")), _first_text(item.get("ground_truth"))
                if prompt is None or answer is None:
                    f.fail(field, "needs a non-empty 'prompt' and 'ground_truth'")
                probes.append(Probe(prompt, answer, names[name]))
    return probes


def parse_zsre(f: _Fields, stem: str) -> EditCase:
    """ZsRE (EasyEdit/MEND), with the portability, inverse-relation and subject-replace extras."""
    src, alt, subject = f.text("src"), f.text("alt"), f.text("subject", required=False)
    truth = f.text("answers", required=False) or f.text("pred", required=False)
    probes = [Probe(p, alt, "paraphrase") for p in f.texts("rephrase")]
    loc = f.text("loc", required=False)
    if loc is not None:
        probes.append(Probe(loc, f.text("loc_ans"), "neighbour"))
    if f.get("portability", required=False) is not None:
        probes.append(Probe(f.text("portability.New Question"), f.text("portability.New Answer"), "one_hop"))
    inverse = f.text("inverse question", required=False)
    if inverse is not None:
        probes.append(Probe(inverse, f.text("subject"), "reversed_relation"))
    alias_question = f.text("alter_subject_question", required=False)
    if alias_question is not None:
        probes.append(Probe(alias_question, alt, "subject_replace"))
    return EditCase(_request(f, src, alt, subject, truth, stem), tuple(probes))


def parse_counterfact(f: _Fields, stem: str) -> EditCase:
    """EasyEdit's flat CounterFact (KnowEdit-style groups too, when present)."""
    prompt, target = f.text("prompt"), f.text("target_new")
    probes = [Probe(p, target, "paraphrase") for p in f.texts("rephrase_prompt") + f.texts("rephrase_prompts")]
    loc = f.text("locality_prompt", required=False)
    if loc is not None:
        probes.append(Probe(loc, f.text("locality_ground_truth"), "neighbour"))
    probes += _grouped(f, KNOWEDIT_GROUPS)
    req = _request(f, prompt, target, f.text("subject", False), f.text("ground_truth", False), stem)
    return EditCase(req, tuple(probes))


def parse_rome(f: _Fields, stem: str) -> EditCase:
    """ROME's nested CounterFact, with the portability and subject-replace extras."""
    template, subject = f.text("requested_rewrite.prompt"), f.text("requested_rewrite.subject")
    if "{}" not in template:
        f.fail("requested_rewrite.prompt", "must contain '{}' where the subject goes")
    new, true = f.text("requested_rewrite.target_new.str"), f.text("requested_rewrite.target_true.str")
    prompt = template.format(subject)
    probes = [Probe(p, new, "paraphrase") for p in f.texts("paraphrase_prompts")]
    neighbours = f.texts("neighborhood_prompts")
    probes += [Probe(p, true, "pre_neighbour") for p in neighbours]
    probes += [Probe(p, new, "post_neighbour") for p in f.texts("attribute_prompts")]
    probes += [Probe(f"{prompt} {new}. {p}", true, "distract_neighbour") for p in neighbours[:MAX_DISTRACT]]
    alias = f.text("alternative_subject", required=False)
    if alias is not None:
        probes.append(Probe(template.format(alias), new, "subject_replace"))
    if f.get("portability", required=False) is not None:
        probes.append(Probe(f.text("portability.New Question"), f.text("portability.New Answer"), "one_hop"))
    req = _request(f, prompt, new, subject, true, stem)
    return EditCase(req, tuple(probes), relation=f.text("requested_rewrite.relation_id", required=False))


def parse_knowedit(f: _Fields, stem: str) -> EditCase:
    """KnowEdit (ZsRE, Wiki_recent, WikiData_counterfact; WikiBio's field names)."""
    prompt = f.text("prompt" if "prompt" in f.rec else "text")  # WikiBio names them text/labels/concept
    target = f.text("target_new" if "target_new" in f.rec else "labels")
    subject = f.text("subject" if "subject" in f.rec else "concept", required=False)
    paraphrases = f.texts("rephrase") + f.texts("rephrase_prompt") + f.texts("rephrase_prompts")
    probes = [Probe(p, target, "paraphrase") for p in paraphrases] + _grouped(f, KNOWEDIT_GROUPS)
    req = _request(f, prompt, target, subject, f.text("ground_truth", required=False), stem)
    return EditCase(req, tuple(probes))


def parse_world(f: _Fields, stem: str) -> EditCase:
    """The world's own records (``to_record``), checked before ``from_record``."""
    f.text("prompt"), f.text("target_new")  # name the field if missing before from_record sees it
    _grouped(f, {v: k for k, v in EXPORT_NAMES.items()})
    try:
        return from_record(f.rec)
    except (KeyError, TypeError, ValueError) as exc:
        f.fail(None, f"is not a valid world record ({exc!r})")


PARSERS: dict[str, Callable[[_Fields, str], EditCase]] = {
    "zsre": parse_zsre, "counterfact": parse_counterfact, "rome": parse_rome,
    "knowedit": parse_knowedit, "world": parse_world}


def detect_format(rec: Any) -> str:
    """The format of one record (see the module docstring), from the fields it has."""
    if not isinstance(rec, dict):
        raise DataError(f"a record is a JSON {type(rec).__name__}; expected objects")
    if "requested_rewrite" in rec:
        return "rome"
    if "src" in rec and "alt" in rec:
        return "zsre"
    if "rephrase_prompts" in rec and ("locality" in rec or "portability" in rec):
        return "world"
    if "locality_prompt" in rec:
        return "counterfact"
    if ("prompt" in rec or "text" in rec) and ("target_new" in rec or "labels" in rec):
        return "knowedit"
    raise DataError(f"cannot tell the format of a record with fields {sorted(rec)[:8]}; "
                    f"pass the format explicitly, one of: {', '.join(FORMATS)}")


def read_records(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list:
    """The records of a JSON list file (or JSON lines), with size and syntax checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no data file at {path}: give the path of a JSON file, or 'world'")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise DataError(f"{path} is {_human(size)}, over the limit of {_human(max_bytes)}; "
                        "raise the limit (--max-data-mb) if you mean it, or split the file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}); expected a JSON file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        data = _json_lines(text)
        if data is None:
            raise DataError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
                            "expected a JSON list of records (or one JSON object per line)") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path} holds a JSON {type(data).__name__}; expected a list of records")
    if not data:
        raise DataError(f"{path} has no records")
    return data


def _human(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} kB"


def _json_lines(text: str) -> list | None:
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()] or None
    except json.JSONDecodeError:
        return None


def load_dataset(path: str | Path, fmt: str = "auto", limit: int | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, skip_invalid: bool = False) -> list[EditCase]:
    """Every record of ``path`` (the first ``limit``) as an EditCase.

    ``fmt="auto"`` detects the format from the first record. A malformed record raises
    DataError naming the record and field; with ``skip_invalid`` it is logged and left out
    instead (real files have a few, e.g. ZsRE records with an empty ``alt``).
    """
    path = Path(path)
    records = read_records(path, max_bytes)[:limit]
    fmt = detect_format(records[0]) if fmt == "auto" else fmt
    if fmt not in PARSERS:
        raise DataError(f"unknown data format {fmt!r}; choose one of: auto, {', '.join(FORMATS)}")
    cases, skipped = [], 0
    for i, rec in enumerate(records):
        try:
            cases.append(PARSERS[fmt](_Fields(rec, i, path.name), path.stem))
        except DataError as exc:
            if not skip_invalid:
                raise
            skipped += 1
            log.warning("skipped: %s", exc)
    if not cases:
        raise DataError(f"{path}: no usable records")
    log.info("loaded %d %s cases from %s (%d skipped)", len(cases), fmt, path, skipped)
    return cases


def world_split_cases(split: str = "test", seed: int = 0, world: World | None = None,
                      split_seed: int = 0) -> list[EditCase]:
    """The world's edit cases of ``split``, with targets, probes and order drawn by ``seed``.

    Which facts make up the split is fixed by ``split_seed`` (trained editors learned on the
    train split of seed 0, so test facts must not move); ``seed`` draws each fact's new target,
    its sampled neighbours and attributes, and the order of the cases.
    """
    from .presets import default_world  # cached; imported here as presets pulls in torch
    world = world or default_world()
    ids = {c.request.case_id for c in world_cases(world, split, split_seed)}
    return [c for c in world_cases(world, "all", seed) if c.request.case_id in ids]


def load_cases(data: str, n: int | None = None, seed: int = 0, fmt: str = "auto",
               max_bytes: int = DEFAULT_MAX_BYTES, skip_invalid: bool = False) -> list[EditCase]:
    """Cases for a bench run: ``"world"`` / ``"world:SPLIT"``, or a file's first ``n`` records.

    The seed draws the world's targets and order (``world_split_cases``); a file's records stay
    the first n, in an order shuffled by the seed (it matters for sequential editing).
    """
    if data == "world" or data.startswith("world:"):
        split = data.partition(":")[2] or "test"
        return world_split_cases(split, seed)[:n]
    cases = load_dataset(data, fmt, n, max_bytes, skip_invalid)
    random.Random(seed).shuffle(cases)
    return cases


def group_counts(cases: Sequence[EditCase]) -> dict[str, int]:
    """How many probes of each group the cases hold (for reports)."""
    counts = {g: 0 for g in GROUPS}
    for c in cases:
        for p in c.probes:
            counts[p.group] += 1
    return {g: k for g, k in counts.items() if k}
