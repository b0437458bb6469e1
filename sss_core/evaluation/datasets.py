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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    """Typed access to one record's fields; every failure names the record and the field.

    ``lenient`` (``--skip-invalid``): a malformed optional probe group is left out and its name
    kept in ``dropped`` instead of failing the record (``optional``).
    """

    def __init__(self, rec: Any, index: int, source: str, lenient: bool = False):
        self.source, self.index, self.lenient = source, index, lenient
        self.dropped: list[str] = []  # optional probe groups left out of this record (lenient mode)
        if not isinstance(rec, dict):
            self.fail(None, f"is a JSON {_kind(rec)}, not an object")
        self.rec = rec

    def fail(self, field: str | None, problem: str):
        """Raise DataError: ``SOURCE: record I, field 'F' PROBLEM``."""
        where = f"{self.source}: record {self.index}" + (f", field {field!r}" if field else "")
        raise DataError(f"{where} {problem}")

    def get(self, path: str, required: bool = True) -> Any:
        """The value at a dotted ``path`` ("requested_rewrite.target_new.str"), or None when absent.

        A required value that is missing, or sits under a value that is not an object, fails.
        """
        value: Any = self.rec
        parts = path.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(value, dict):
                if required:
                    self.fail(".".join(parts[:depth]), f"must be an object, got {_show(value)}")
                return None
            if part not in value:
                if required:
                    self.fail(path, "is missing")
                return None
            value = value[part]
        return value

    def text(self, path: str, required: bool = True) -> str | None:
        """A non-empty string (the first one if the value is a list of aliases).

        Absent, null or unusable (an empty string, a number, an object) with ``required=False``: None.
        """
        value = self.get(path, required)
        out = _first_text(value)
        if out is None and required:
            self.fail(path, f"must be a non-empty string, got {_show(value)}")
        return out

    def texts(self, path: str) -> list[str]:
        """A string or list of strings (absent or null: empty); anything else fails."""
        value = self.get(path, required=False)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        out = [_first_text(v) for v in items]
        if any(v is None for v in out):
            self.fail(path, f"must be a string or a list of non-empty strings, got {_show(value)}")
        return out

    def optional(self, field: str, build: Callable[[], list[Probe]]) -> list[Probe]:
        """The probes ``build()`` makes from the optional group ``field``.

        A malformed group raises DataError; in lenient mode it is left out (logged and counted in
        ``dropped``) and the record, whose edit and other probes are usable, is kept.
        """
        try:
            return build()
        except DataError as exc:
            if not self.lenient:
                raise
            self.dropped.append(field)
            log.warning("%s; that probe group is left out, the record kept", exc)
            return []

    def case_id(self, stem: str) -> str:
        """The record's ``case_id`` as text, or ``STEM-INDEX`` when it has none."""
        value = self.rec.get("case_id")
        if value is None:
            return f"{stem}-{self.index}"
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            self.fail("case_id", f"must be a non-empty string or a whole number, got {_show(value)}")
        return str(value)


def _kind(value: Any) -> str:
    """The JSON name of ``value``'s type: object, array, string, number, boolean, null."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _show(value: Any) -> str:
    """A short rendering of a bad value for an error message (at most about 60 characters)."""
    if isinstance(value, str):
        return "an empty string" if not value.strip() else repr(value[:60])
    if isinstance(value, (dict, list)):
        return f"{'an' if _kind(value) in ('object', 'array') else 'a'} {_kind(value)} of {len(value)} item(s)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**60:
        return "a number too large to be meant"
    return repr(value)[:60] if value is not None else "null"


def _first_text(value: Any) -> str | None:
    """``value`` if a non-empty string, else the first such string of a (nested) alias list."""
    while isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, str) and value.strip() else None


def _fill(f: _Fields, template: str, subject: str, field: str) -> str:
    """``template`` with its (first) ``{}`` replaced by ``subject``; fails naming ``field`` without one.

    ``str.replace``, not ``str.format``: a template holding other braces is still a template.
    """
    if "{}" not in template:
        f.fail(field, "must contain '{}' where the subject goes")
    return template.replace("{}", subject, 1)


def _one_hop(f: _Fields) -> list[Probe]:
    """EasyEdit's ``portability`` object {New Question, New Answer} -> one one_hop probe.

    Absent, null or empty ({}): no portability probe (EasyEdit writes {} for records without one).
    """
    value = f.get("portability", required=False)
    if value is None or value == {}:
        return []
    if not isinstance(value, dict):
        f.fail("portability", f"must be an object with 'New Question' and 'New Answer', got {_show(value)}")
    return [Probe(f.text("portability.New Question"), f.text("portability.New Answer"), "one_hop")]


def _request(f: _Fields, prompt: str, target: str, subject: str | None, truth: str | None,
             stem: str, template: str | None = None) -> EditRequest:
    """The record's EditRequest; a subject that is not in the prompt is dropped (logged), not fatal.

    ``template`` (ROME's prompt with ``{}``) is kept when it makes the prompt from the subject: the
    editors then locate the subject at its slot, not at a look-alike earlier in the prompt.
    """
    if subject is not None and subject not in prompt:
        log.debug("%s record %d: subject %r is not in the prompt; dropped", f.source, f.index, subject)
        subject = None
    if template is not None and (subject is None or template.replace("{}", subject.strip(), 1) != prompt):
        template = None
    return EditRequest(prompt, target, subject=subject, ground_truth=truth, case_id=f.case_id(stem),
                       template=template)


def _grouped(f: _Fields, names: dict[str, str]) -> list[Probe]:
    """KnowEdit-style ``locality`` / ``portability`` dicts: {name: [{prompt, ground_truth}, ...]}.

    Each named group is optional on its own: a malformed one fails, or in lenient mode is dropped.
    """
    probes = []
    for kind in ("locality", "portability"):
        groups = f.get(kind, required=False)
        if groups is None:
            continue
        if not isinstance(groups, dict):
            probes += f.optional(kind, lambda kind=kind, groups=groups: f.fail(
                kind, f"must be an object of named probe lists, got {_show(groups)}"))
            continue
        for name, items in groups.items():
            probes += f.optional(f"{kind}.{name}", lambda kind=kind, name=name, items=items:
                                 _named_group(f, kind, name, items, names))
    return probes


def _named_group(f: _Fields, kind: str, name: str, items: Any, names: dict[str, str]) -> list[Probe]:
    """The probes of one named group ``kind.name`` (a list of {prompt, ground_truth}, or one such object)."""
    if name not in names:
        f.fail(f"{kind}.{name}", f"is not a known group; known: {', '.join(sorted(names))}")
    if items is None:
        return []
    probes = []
    for j, item in enumerate(items if isinstance(items, list) else [items]):
        item = item if isinstance(item, dict) else {}
        prompt, answer = _first_text(item.get("prompt")), _first_text(item.get("ground_truth"))
        if prompt is None or answer is None:
            f.fail(f"{kind}.{name}[{j}]", "needs a non-empty 'prompt' and 'ground_truth'")
        probes.append(Probe(prompt, answer, names[name]))
    return probes


def parse_zsre(f: _Fields, stem: str) -> EditCase:
    """ZsRE (EasyEdit/MEND), with the portability, inverse-relation and subject-replace extras."""
    src, alt, subject = f.text("src"), f.text("alt"), f.text("subject", required=False)
    truth = f.text("answers", required=False) or f.text("pred", required=False)
    probes = f.optional("rephrase", lambda: [Probe(p, alt, "paraphrase") for p in f.texts("rephrase")])
    probes += f.optional("loc", lambda: [Probe(f.text("loc"), f.text("loc_ans"), "neighbour")]
                         if f.get("loc", required=False) is not None else [])
    probes += f.optional("portability", lambda: _one_hop(f))
    probes += f.optional("inverse question", lambda: [Probe(f.text("inverse question"), f.text("subject"),
                                                             "reversed_relation")]
                         if f.get("inverse question", required=False) is not None else [])
    probes += f.optional("alter_subject_question", lambda: [Probe(f.text("alter_subject_question"), alt,
                                                                   "subject_replace")]
                         if f.get("alter_subject_question", required=False) is not None else [])
    return EditCase(_request(f, src, alt, subject, truth, stem), tuple(probes))


def parse_counterfact(f: _Fields, stem: str) -> EditCase:
    """EasyEdit's flat CounterFact (KnowEdit-style groups too, when present)."""
    prompt, target = f.text("prompt"), f.text("target_new")
    probes = f.optional("rephrase_prompt", lambda: [Probe(p, target, "paraphrase") for p in
                                                    f.texts("rephrase_prompt") + f.texts("rephrase_prompts")])
    probes += f.optional("locality_prompt", lambda: [Probe(f.text("locality_prompt"),
                                                           f.text("locality_ground_truth"), "neighbour")]
                         if f.get("locality_prompt", required=False) is not None else [])
    probes += _grouped(f, KNOWEDIT_GROUPS)
    req = _request(f, prompt, target, f.text("subject", False), f.text("ground_truth", False), stem)
    return EditCase(req, tuple(probes))


def parse_rome(f: _Fields, stem: str) -> EditCase:
    """ROME's nested CounterFact, with the portability and subject-replace extras."""
    template, subject = f.text("requested_rewrite.prompt"), f.text("requested_rewrite.subject")
    new, true = f.text("requested_rewrite.target_new.str"), f.text("requested_rewrite.target_true.str")
    prompt = _fill(f, template, subject, "requested_rewrite.prompt")
    probes = f.optional("paraphrase_prompts", lambda: [Probe(p, new, "paraphrase")
                                                       for p in f.texts("paraphrase_prompts")])
    neighbours = f.optional("neighborhood_prompts", lambda: [Probe(p, true, "pre_neighbour")
                                                             for p in f.texts("neighborhood_prompts")])
    probes += neighbours
    probes += f.optional("attribute_prompts", lambda: [Probe(p, new, "post_neighbour")
                                                       for p in f.texts("attribute_prompts")])
    probes += [Probe(f"{prompt} {new}. {p.prompt}", true, "distract_neighbour") for p in neighbours[:MAX_DISTRACT]]
    probes += f.optional("alternative_subject", lambda: [
        Probe(_fill(f, template, f.text("alternative_subject"), "requested_rewrite.prompt"), new, "subject_replace")]
        if f.get("alternative_subject", required=False) is not None else [])
    probes += f.optional("portability", lambda: _one_hop(f))
    req = _request(f, prompt, new, subject, true, stem, template=template)
    return EditCase(req, tuple(probes), relation=f.text("requested_rewrite.relation_id", required=False))


def parse_knowedit(f: _Fields, stem: str) -> EditCase:
    """KnowEdit (ZsRE, Wiki_recent, WikiData_counterfact; WikiBio's field names)."""
    wikibio = "prompt" not in f.rec and "text" in f.rec  # WikiBio names them text/labels/concept
    prompt = f.text("text" if wikibio else "prompt")
    target = f.text("labels" if wikibio and "target_new" not in f.rec else "target_new")
    subject = f.text("subject" if "subject" in f.rec else "concept", required=False)
    probes = f.optional("rephrase", lambda: [Probe(p, target, "paraphrase") for p in f.texts("rephrase") +
                                             f.texts("rephrase_prompt") + f.texts("rephrase_prompts")])
    probes += _grouped(f, KNOWEDIT_GROUPS)
    req = _request(f, prompt, target, subject, f.text("ground_truth", required=False), stem)
    return EditCase(req, tuple(probes))


def parse_world(f: _Fields, stem: str) -> EditCase:
    """The world's own records (``to_record``), read by ``from_record``; its errors name the record here."""
    def drop(exc: DataError, field: str) -> None:
        f.optional(field, lambda: f.fail(None, str(exc)))  # lenient: counted and logged; strict: raised

    try:
        return from_record(f.rec, on_bad_group=drop)
    except DataError as exc:
        f.fail(None, str(exc))


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


def _detect_file_format(records: list, source: str) -> str:
    """The format of the first record whose format can be told (a malformed first record is then
    reported, or skipped, as that format's record); DataError naming record 0 if none can."""
    for rec in records:
        try:
            return detect_format(rec)
        except DataError:
            continue
    try:
        detect_format(records[0])
    except DataError as exc:
        raise DataError(f"{source}: record 0: {exc}") from None
    raise AssertionError("unreachable: record 0's format could not be told above")


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
    except (ValueError, RecursionError) as exc:  # a number of over 4300 digits; nesting deeper than Python's stack
        raise DataError(f"{path} cannot be read as JSON ({_kind_of_error(exc)}); expected a JSON list of "
                        "records") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path} holds a JSON {type(data).__name__}; expected a list of records")
    if not data:
        raise DataError(f"{path} has no records")
    return data


def _human(n: int) -> str:
    """A byte count as "1.5 kB" / "101.0 MB"."""
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} kB"


def _kind_of_error(exc: BaseException) -> str:
    """What made a JSON text unreadable, in words."""
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]


def _json_lines(text: str) -> list | None:
    """The records of a JSON-lines text (one JSON value per non-blank line), or None if it is not one."""
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()] or None
    except (ValueError, RecursionError):
        return None


def load_dataset(path: str | Path, fmt: str = "auto", limit: int | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, skip_invalid: bool = False) -> list[EditCase]:
    """Every record of ``path`` (the first ``limit``) as an EditCase.

    ``fmt="auto"`` detects the format from the first record. Whatever is wrong with a record
    (a missing field, a wrong type, null, an empty string, a list where a string belongs), the
    error is a DataError naming the file, the record and the field. With ``skip_invalid``
    exactly what is unusable is left out: a record whose edit (prompt, target, subject) is
    unusable is skipped; a malformed optional probe group (paraphrases, neighbours, portability,
    ...) is dropped and the record kept. Both are logged, and counted in one line at the end
    (real files have a few, e.g. ZsRE records with an empty ``alt``).

    Raises:
        DataError: as above, or no usable record at all, or a ``limit`` below 1.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise DataError(f"the number of records to load must be at least 1, got {limit}")
    records = read_records(path, max_bytes)[:limit]
    if fmt == "auto":
        fmt = _detect_file_format(records, path.name)
    if fmt not in PARSERS:
        raise DataError(f"unknown data format {fmt!r}; choose one of: auto, {', '.join(FORMATS)}")
    cases, skipped, dropped = [], 0, 0
    for i, rec in enumerate(records):
        try:
            fields = _Fields(rec, i, path.name, lenient=skip_invalid)
            cases.append(PARSERS[fmt](fields, path.stem))
            dropped += len(fields.dropped)
        except DataError as exc:
            if not skip_invalid:
                raise
            skipped += 1
            log.warning("skipped: %s", exc)
    if not cases:
        raise DataError(f"{path}: no usable records")
    log.info("loaded %d %s cases from %s", len(cases), fmt, path)
    if skipped or dropped:
        log.warning("%s: %d record(s) skipped as unusable, %d malformed probe group(s) dropped from kept records",
                    path.name, skipped, dropped)
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
