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
The edit's own texts (prompt, target, subject) must be strings as the format defines them: a list
there is refused, never edited as its first item. With ``skip_invalid`` only the smallest unusable
unit is left out: one probe (an item of a probe list, or a probe field holding no usable probe),
else the record (its edit is unusable); ``load_dataset_report`` / ``load_bytes`` count and name them.

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
from dataclasses import dataclass
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

    ``lenient`` (``--skip-invalid``): an unusable probe is left out and its field kept in
    ``dropped`` instead of failing the record: one item of a probe list (``texts``, KnowEdit's
    named groups), or a probe field with no usable probe at all (``optional``).
    """

    def __init__(self, rec: Any, index: int, source: str, lenient: bool = False):
        self.source, self.index, self.lenient = source, index, lenient
        self.dropped: list[str] = []  # fields ('rephrase[1]', 'loc', ...) of probes left out (lenient mode)
        if not isinstance(rec, dict):
            self.fail(None, f"is a JSON {_kind(rec)}, not an object")
        self.rec = rec

    def fail(self, field: str | None, problem: str):
        """Raise DataError: ``SOURCE: record I, field 'F' PROBLEM`` (its ``field`` attribute: F)."""
        where = f"{self.source}: record {self.index}" + (f", field {field!r}" if field else "")
        exc = DataError(f"{where} {problem}")
        exc.field = field
        raise exc

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

    def edit_text(self, path: str, required: bool = True) -> str | None:
        """A text of the edit itself (prompt, target, subject): a non-empty string and nothing else.

        A list is refused (``must be one string``), never read as its first item: the record would
        be edited as another text than it holds. Absent or null with ``required=False``: None.

        Raises:
            DataError: naming the record and the field, for a required value that is missing or
                not a non-empty string, and for any value that is a list.
        """
        value = self.get(path, required)
        if isinstance(value, list):
            self.fail(path, f"must be one string, got {_show(value)}; a list is not this format's {path!r}")
        return self.text(path, required) if required or value is not None else None

    def texts(self, path: str) -> list[str]:
        """A string or list of strings (absent or null: empty); anything else fails.

        Lenient: an unusable item of a list (null, empty, a number, ...) is left out alone and named
        (``PATH[J]``) in ``dropped``; the list's usable items are kept.

        Raises:
            DataError: a value that is not a string or a list; strictly, also a list with an unusable item.
        """
        value = self.get(path, required=False)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        out = [_first_text(v) for v in items]
        if any(v is None for v in out):
            if not (self.lenient and isinstance(value, list)):
                self.fail(path, f"must be a string or a list of non-empty strings, got {_show(value)}")
            for j, v in enumerate(items):
                if out[j] is None:
                    self.drop(f"{path}[{j}]", f"must be a non-empty string, got {_show(v)}")
        return [v for v in out if v is not None]

    def drop(self, field: str, problem: str) -> None:
        """Lenient mode: leave the probe at ``field`` out of this record, logged and named in ``dropped``."""
        self.dropped.append(field)
        log.warning("%s: record %d, field %r %s; that probe is left out, the record kept",
                    self.source, self.index, field, problem)

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
            self.dropped.append(getattr(exc, "field", None) or field)
            log.warning("%s; that probe is left out, the record kept", exc)
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
    """The probes of one named group ``kind.name`` (a list of {prompt, ground_truth}, or one such object).

    Raises:
        DataError: an unknown group name; strictly, also an item without a usable prompt and answer
            (leniently that item alone is left out and named in ``f.dropped``).
    """
    if name not in names:
        f.fail(f"{kind}.{name}", f"is not a known group; known: {', '.join(sorted(names))}")
    if items is None:
        return []
    probes = []
    for j, item in enumerate(items if isinstance(items, list) else [items]):
        item = item if isinstance(item, dict) else {}
        prompt, answer = _first_text(item.get("prompt")), _first_text(item.get("ground_truth"))
        if prompt is None or answer is None:
            if f.lenient:  # this probe alone is unusable: the group's other probes are kept
                f.drop(f"{kind}.{name}[{j}]", "needs a non-empty 'prompt' and 'ground_truth'")
                continue
            f.fail(f"{kind}.{name}[{j}]", "needs a non-empty 'prompt' and 'ground_truth'")
        probes.append(Probe(prompt, answer, names[name]))
    return probes


def parse_zsre(f: _Fields, stem: str) -> EditCase:
    """ZsRE (EasyEdit/MEND), with the portability, inverse-relation and subject-replace extras."""
    src, alt, subject = f.edit_text("src"), f.edit_text("alt"), f.edit_text("subject", required=False)
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
    prompt, target = f.edit_text("prompt"), f.edit_text("target_new")
    probes = f.optional("rephrase_prompt", lambda: [Probe(p, target, "paraphrase") for p in
                                                    f.texts("rephrase_prompt") + f.texts("rephrase_prompts")])
    probes += f.optional("locality_prompt", lambda: [Probe(f.text("locality_prompt"),
                                                           f.text("locality_ground_truth"), "neighbour")]
                         if f.get("locality_prompt", required=False) is not None else [])
    probes += _grouped(f, KNOWEDIT_GROUPS)
    req = _request(f, prompt, target, f.edit_text("subject", False), f.text("ground_truth", False), stem)
    return EditCase(req, tuple(probes))


def parse_rome(f: _Fields, stem: str) -> EditCase:
    """ROME's nested CounterFact, with the portability and subject-replace extras."""
    template, subject = f.edit_text("requested_rewrite.prompt"), f.edit_text("requested_rewrite.subject")
    new = f.edit_text("requested_rewrite.target_new.str")
    true = f.edit_text("requested_rewrite.target_true.str")
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
    prompt = f.edit_text("text" if wikibio else "prompt")
    target = f.edit_text("labels" if wikibio and "target_new" not in f.rec else "target_new")
    subject = f.edit_text("subject" if "subject" in f.rec else "concept", required=False)
    probes = f.optional("rephrase", lambda: [Probe(p, target, "paraphrase") for p in f.texts("rephrase") +
                                             f.texts("rephrase_prompt") + f.texts("rephrase_prompts")])
    probes += _grouped(f, KNOWEDIT_GROUPS)
    req = _request(f, prompt, target, subject, f.text("ground_truth", required=False), stem)
    return EditCase(req, tuple(probes))


def parse_world(f: _Fields, stem: str) -> EditCase:
    """The world's own records (``to_record``), read by ``from_record``; its errors name the record here.

    Lenient: an unusable item of a probe list is left out alone (``_usable_world_items``), a probe
    group that is unusable as a whole is left out by ``from_record``; both named in ``f.dropped``.
    """
    def drop(exc: DataError, field: str) -> None:
        f.optional(field, lambda: f.fail(None, str(exc)))  # lenient: counted and logged; strict: raised

    try:
        return from_record(_usable_world_items(f) if f.lenient else f.rec, on_bad_group=drop)
    except DataError as exc:
        f.fail(None, str(exc))


def _usable_world_items(f: _Fields) -> Any:
    """A copy of the world record ``f.rec`` without the items of its probe lists that ``from_record``
    cannot use (a paraphrase that is not a non-empty string; a known group's item without a non-empty
    string prompt and ground_truth), each named in ``f.dropped``. Anything else is left as it is."""
    rec = f.rec
    if not isinstance(rec, dict):
        return rec
    rec = dict(rec)
    usable = lambda v: isinstance(v, str) and bool(v.strip())  # noqa: E731 (from_record's own test)
    paras = rec.get("rephrase_prompts")
    if isinstance(paras, list):
        for j, v in enumerate(paras):
            if not usable(v):
                f.drop(f"rephrase_prompts[{j}]", f"must be a non-empty string, got {_show(v)}")
        rec["rephrase_prompts"] = [v for v in paras if usable(v)]
    for kind in ("locality", "portability"):
        groups = rec.get(kind)
        if not isinstance(groups, dict):
            continue
        rec[kind] = groups = dict(groups)
        for name, items in groups.items():
            if name not in EXPORT_NAMES.values() or not isinstance(items, list):
                continue  # an unknown or malformed group: from_record leaves the whole group out
            keep = []
            for j, item in enumerate(items):
                if isinstance(item, dict) and usable(item.get("prompt")) and usable(item.get("ground_truth")):
                    keep.append(item)
                else:
                    f.drop(f"{kind}.{name}[{j}]", "needs a non-empty 'prompt' and 'ground_truth'")
            groups[name] = keep
    return rec


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
    """The records of a JSON list file (or JSON lines), with size and syntax checked.

    Raises:
        DataError: no such file, over ``max_bytes``, not UTF-8, not JSON, not a list of records, empty.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no data file at {path}: give the path of a JSON file, or 'world'")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise DataError(f"{path} is {_human(size)}, over the limit of {_human(max_bytes)}; "
                        "raise the limit (--max-data-mb) if you mean it, or split the file")
    return parse_records(path.read_bytes(), str(path))


def parse_records(data: bytes, path: str) -> list:
    """The records of the bytes of a JSON list file (or JSON lines); messages name the file as ``path``.

    Raises:
        DataError: not UTF-8, not JSON, not a list of records, or no records.
    """
    try:
        text = data.decode("utf-8")
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


@dataclass(frozen=True)
class LoadedData:
    """The cases read from a data file, and what ``skip_invalid`` left out of it, named.

    ``skipped``: one line per record left out whole (its edit is unusable), e.g. ``"record 534,
    field 'alt' must be a non-empty string, got an empty string"``. ``dropped``: one entry per
    unusable probe left out of a kept record, e.g. ``"record 0: 'locality.Forgetfulness[1]'"``.
    """

    cases: list[EditCase]
    source: str
    skipped: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    def summary(self, shown: int = 5) -> str | None:
        """What was left out in one line (the first ``shown`` of each kind named), or None if nothing."""
        if not self.skipped and not self.dropped:
            return None

        def some(items: tuple[str, ...]) -> str:
            more = f"; and {len(items) - shown} more" if len(items) > shown else ""
            return "; ".join(items[:shown]) + more

        parts = []
        if self.skipped:
            parts.append(f"{len(self.skipped)} record(s) skipped as unusable ({some(self.skipped)})")
        if self.dropped:
            parts.append(f"{len(self.dropped)} unusable probe(s) left out of kept records ({some(self.dropped)})")
        return f"{self.source}: kept {len(self.cases)} record(s); " + "; ".join(parts)


def load_records(records: list, source: str, stem: str, fmt: str = "auto",
                 skip_invalid: bool = False) -> LoadedData:
    """The parsed ``records`` (e.g. of ``parse_records``) as EditCases; messages name the file ``source``.

    Strict (the default): the first unusable record raises. With ``skip_invalid`` only the smallest
    unusable unit is left out and named in the result: a probe (an item of a probe list, or a probe
    field with no usable probe), else the record whose edit is unusable.

    Raises:
        DataError: naming the file, the record and the field; an unknown ``fmt``; no usable record.
    """
    if fmt == "auto":
        fmt = _detect_file_format(records, source)
    if fmt not in PARSERS:
        raise DataError(f"unknown data format {fmt!r}; choose one of: auto, {', '.join(FORMATS)}")
    cases, skipped, dropped = [], [], []
    for i, rec in enumerate(records):
        try:
            fields = _Fields(rec, i, source, lenient=skip_invalid)
            cases.append(PARSERS[fmt](fields, stem))
            dropped += [f"record {i}: {name!r}" for name in fields.dropped]
        except DataError as exc:
            if not skip_invalid:
                raise
            skipped.append(str(exc).removeprefix(f"{source}: "))
            log.warning("skipped: %s", exc)
    if not cases:
        raise DataError(f"{source}: no usable records" + (f" ({len(skipped)} skipped as unusable, the first: "
                                                          f"{skipped[0]})" if skipped else ""))
    log.info("loaded %d %s cases from %s", len(cases), fmt, source)
    return LoadedData(cases, source, tuple(skipped), tuple(dropped))


def load_bytes(data: bytes, name: str, fmt: str = "auto", limit: int | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, skip_invalid: bool = False) -> LoadedData:
    """The first ``limit`` records of a data file's bytes (e.g. an upload), named ``name`` in every message.

    Raises:
        DataError: over ``max_bytes``, a ``limit`` below 1, or as ``parse_records`` and ``load_records``.
    """
    if len(data) > max_bytes:
        raise DataError(f"{name} is {_human(len(data))}, over the limit of {_human(max_bytes)}")
    if limit is not None and limit < 1:
        raise DataError(f"the number of records to load must be at least 1, got {limit}")
    return load_records(parse_records(data, name)[:limit], name, Path(name).stem, fmt, skip_invalid)


def load_dataset_report(path: str | Path, fmt: str = "auto", limit: int | None = None,
                        max_bytes: int = DEFAULT_MAX_BYTES, skip_invalid: bool = False) -> LoadedData:
    """``load_dataset``'s cases with what ``skip_invalid`` left out, counted and named (``LoadedData``).

    Raises:
        DataError: as ``load_dataset``.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise DataError(f"the number of records to load must be at least 1, got {limit}")
    return load_records(read_records(path, max_bytes)[:limit], path.name, path.stem, fmt, skip_invalid)


def load_dataset(path: str | Path, fmt: str = "auto", limit: int | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, skip_invalid: bool = False) -> list[EditCase]:
    """Every record of ``path`` (the first ``limit``) as an EditCase.

    ``fmt="auto"`` detects the format from the first record. Whatever is wrong with a record
    (a missing field, a wrong type, null, an empty string, a list where a string belongs), the
    error is a DataError naming the file, the record and the field. With ``skip_invalid``
    exactly what is unusable is left out: a record whose edit (prompt, target, subject) is
    unusable is skipped; an unusable probe (one item of a list of paraphrases, neighbours or a
    KnowEdit group; a probe field with no usable probe) is left out and the record kept. Each is
    logged, and all are counted and named in one warning at the end (real files have a few, e.g.
    ZsRE records with an empty ``alt``); ``load_dataset_report`` returns them.

    Raises:
        DataError: as above, or no usable record at all, or a ``limit`` below 1.
    """
    loaded = load_dataset_report(path, fmt, limit, max_bytes, skip_invalid)
    if loaded.summary():
        log.warning("%s", loaded.summary())
    return loaded.cases


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
