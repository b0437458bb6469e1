"""One run, described once: the run record.

A ``RunRecord`` is everything that made one edit's result: the model (its public name, weights
fingerprint and dtype), the editor and its *full* validated config (not only the settings changed
from the defaults), what C means for that editor (``EditorSpec.c_role``), the request and every
probe it was scored on, the seed, the analysis options (background sentences, kNN, pooling, top-k)
and the versions of the project, torch and transformers that ran it. It is plain, frozen,
versioned and serialisable: ``to_dict`` / ``from_dict`` (JSON), ``to_link`` / ``from_link`` (a
compact URL-safe text for the app's links), ``digest`` (what the results store keys a result by)
and ``command`` (the equivalent ``sss-lab`` command line).

``analysis.run_record(lm, record)`` is the one pipeline that turns a record into a result; the CLI
(``edit``, ``inspect``, ``edit --from run.json``) and the app build records and call it.

Example:
    >>> from sss_core import EditRequest, case_for_request, load_model
    >>> from sss_core.record import make_record
    >>> lm = load_model()
    >>> case = case_for_request(EditRequest("The capital of France is", "Rome", subject="France"), lm=lm)
    >>> record = make_record("ft-l+sss", {"steps": 10}, case, lm=lm)
    >>> record.c, record.c_role, record.overrides()
    (0.9, 'loss', {'steps': 10})
    >>> RunRecord.from_link(record.to_link()) == record
    True
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import platform
import shlex
import weakref
import zlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Mapping

from .editors import C_ROLES, EDITORS, editor_config
from .editors.training import model_fingerprint
from .embeddings import POOLINGS
from .errors import RequestError
from .jsonio import to_json
from .locks import model_lock
from .types import EditCase, EditRequest, Probe

RECORD_VERSION = 1
SHIPPED_MODEL_NAME = "sss_core/assets/default-model"  # models.public_name of the shipped model
N_BACKGROUND = 30  # world facts embedded around an edit as background sentences, unless a record says otherwise
LINK_LIMIT = 6000  # characters of a record in a link beyond which browsers and servers start to refuse URLs


def versions() -> dict[str, str]:
    """The versions of what runs an edit: the project, torch, transformers, Python."""
    out = {"python": platform.python_version()}
    for dist, key in (("sss-lab", "sss_lab"), ("torch", "torch"), ("transformers", "transformers")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "unknown"
    return out


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fingerprint(model) -> str:
    """The model's weights fingerprint (``training.model_fingerprint(model)["weights"]``, 16 hex digits),
    computed once per model object. It leaves out the MLP output projections that editors change,
    so an edited model and its unedited self share it; it changes with the dtype."""
    if model not in _FINGERPRINTS:
        with model_lock(model):  # never read while another thread holds an edit applied
            _FINGERPRINTS[model] = model_fingerprint(model)["weights"]
    return _FINGERPRINTS[model]


@dataclass(frozen=True)
class ModelRef:
    """Which model a run edited: its public name (``models.public_name``), fingerprint and dtype."""

    name: str = SHIPPED_MODEL_NAME
    fingerprint: str | None = None  # None: not known (a record written by hand)
    dtype: str | None = None  # "float32", "bfloat16", ...

    @classmethod
    def of(cls, lm) -> ModelRef:
        """The reference of a loaded model (``models.LoadedModel``)."""
        dtype = str(next(lm.model.parameters()).dtype).removeprefix("torch.")
        return cls(lm.name, fingerprint(lm.model), dtype)


@dataclass(frozen=True)
class AnalysisOptions:
    """How a run is measured beyond the editor's metrics (the app's and ``edit``'s defaults)."""

    # background sentences embedded around the edit: n world facts (validation split), or the sentences themselves
    background: int | tuple[str, ...] = N_BACKGROUND
    k: int = 5  # neighbours of each sentence's kNN distance
    metric: str = "cosine"  # "cosine" or "euclidean"
    pooling: str = "last"  # the kNN distance's sentence embedding: "last" or "mean"
    top_k: int = 0  # the edit prompt's top-k next tokens kept before and after (0: none)
    embeddings: bool = True  # embed the sentences and measure their sparsity (False: the C sweep, sequential)
    poolings: tuple[str, ...] = POOLINGS  # the sentence embeddings kept (EditRun.embeddings' keys)
    world_locality: bool = False  # also read every fact of the built-in world before and after (a few seconds on the shipped model)


def _case_dict(case: EditCase) -> dict[str, Any]:
    """An EditCase as plain JSON-ready values."""
    return {"request": dataclasses.asdict(case.request), "relation": case.relation,
            "probes": [[p.group, p.prompt, p.answer] for p in case.probes]}


def _case_from(d: Mapping[str, Any]) -> EditCase:
    """The EditCase of ``_case_dict``; RequestError when it is not one."""
    try:
        request = EditRequest(**d["request"])
        probes = tuple(Probe(prompt, answer, group) for group, prompt, answer in d.get("probes", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise RequestError(f"the run record's case is not readable ({exc})") from None
    return EditCase(request, probes, d.get("relation"))


@dataclass(frozen=True)
class RunRecord:
    """Everything that made one edit's result; see the module's docstring."""

    editor: str
    settings: dict[str, Any]  # the editor's full validated config (dataclasses.asdict)
    case: EditCase
    model: ModelRef = ModelRef()
    analysis: AnalysisOptions = AnalysisOptions()
    seed: int = 0  # torch's seed, set right before the edit
    probes_from: str = "record"  # "world" (the built-in world's probes for the fact), "typed", "file", "record"
    typed_probes: int = 0  # how many of the case's last probes the user typed (the rest came with the fact)
    versions: dict[str, str] = field(default_factory=versions, compare=False)
    version: int = RECORD_VERSION

    @property
    def c(self) -> float | None:
        """C of the run: the value of the editor's C field (None for an editor without an SSS term)."""
        spec = EDITORS.get(self.editor)
        return self.settings.get(spec.c_field) if spec is not None and spec.c_field else None

    @property
    def c_role(self) -> str | None:
        """What C is for this editor (``EditorSpec.c_role``): "loss", "checkpoint" or None."""
        spec = EDITORS.get(self.editor)
        return spec.c_role if spec is not None else None

    def c_meaning(self) -> str | None:
        """C and what it means, in words (None for an editor without an SSS term)."""
        if self.c_role is None:
            return None
        return f"C = {self.c:g}: {C_ROLES[self.c_role]}"

    def overrides(self) -> dict[str, Any]:
        """The settings that differ from the registry's defaults for this editor (C included when it differs)."""
        defaults = dataclasses.asdict(editor_config(self.editor))
        return {k: v for k, v in self.settings.items() if plain(defaults.get(k)) != plain(v)}

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (``from_dict`` reads it back)."""
        return {"version": self.version, "model": dataclasses.asdict(self.model), "editor": self.editor,
                "settings": plain(self.settings), "c": self.c, "c_means": self.c_meaning(),
                "case": _case_dict(self.case), "probes_from": self.probes_from, "typed_probes": self.typed_probes,
                "seed": self.seed,
                "analysis": dataclasses.asdict(self.analysis), "versions": dict(self.versions)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        """The record of ``to_dict``'s output, its settings validated against the registry.

        Raises RequestError for a newer record version, an unknown editor, a setting its config
        lacks, a trained editor's C that no checkpoint has, or a field that is not readable.
        """
        if not isinstance(d, Mapping) or "editor" not in d or "case" not in d:
            raise RequestError("this is not a run record (it needs 'editor', 'settings' and 'case'); "
                               "give a file exported by 'sss-lab edit --json' or the app's JSON export")
        if int(d.get("version", 1)) > RECORD_VERSION:
            raise RequestError(f"the run record has version {d['version']}, newer than this sss-lab reads "
                               f"({RECORD_VERSION}); upgrade sss-lab")
        settings = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(d.get("settings") or {}).items()}
        config = editor_config(d["editor"], **settings)
        try:
            model = ModelRef(**d.get("model") or {})
            analysis = AnalysisOptions(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in (d.get("analysis") or {}).items()})
        except TypeError as exc:
            raise RequestError(f"the run record has a field this sss-lab does not know ({exc})") from None
        return cls(d["editor"], dataclasses.asdict(config), _case_from(d["case"]), model, analysis,
                   int(d.get("seed", 0)), d.get("probes_from", "record"), int(d.get("typed_probes", 0)),
                   dict(d.get("versions") or {}))

    def digest(self) -> str:
        """16 hex digits that change with anything that changes the result: model fingerprint, editor,
        config, case, seed and analysis options (not the versions). The results store keys by it."""
        d = self.to_dict()
        for provenance in ("versions", "probes_from", "typed_probes", "c_means"):
            d.pop(provenance)  # where the probes came from and what ran it do not change the result
        d["model"].pop("name")  # the same weights under another name give the same result
        return digest_of(d)

    def to_link(self) -> str:
        """The record as compact URL-safe text (zlib + base64url of its JSON, versions left out)."""
        return _encode(self.compact())

    @classmethod
    def from_link(cls, text: str) -> RunRecord:
        """The record of ``to_link``'s text. Raises RequestError when the text is not one."""
        d = _decode(text)
        if not isinstance(d, dict):
            raise RequestError("the link's run record is damaged (not a record); open the link again as it was shared")
        return cls.from_dict(d)

    def compact(self) -> dict[str, Any]:
        """The record without its versions and its C in words: what a link carries (``to_link``, ``pack``)."""
        d = self.to_dict()
        d.pop("versions")
        d.pop("c_means")
        return d

    def command_note(self) -> str | None:
        """Why the flags of ``command()`` do not make exactly this run, or None when they do."""
        if self.probes_from in ("world", "typed"):
            return None
        return (f"the {len(self.case.probes)} probes of this run came with a preset or a data file: the flags give "
                "the built-in world's probes for the fact instead (none for a fact outside the world); "
                "`sss-lab edit --from` replays these probes")

    def to_html(self) -> str:
        """The record as an HTML block for an exported page: the equivalent command, how to replay it
        exactly, and the record itself as JSON (``<script type="application/json" id="sss-run-record">``,
        which ``load_record`` of the saved JSON reads)."""
        record_json = json.dumps(self.to_dict(), indent=2).replace("</", "<\\/")  # safe inside <script>
        return (f'<section id="sss-run"><h2>How to make this run again</h2>'
                f"<p>The same run as a command: <code>{html.escape(self.command())}</code>"
                + (f" ({html.escape(self.command_note())})" if self.command_note() else "") + "</p>"
                "<p>Exactly this run (its probes, seed and every setting): save the run record below as "
                f"<code>run.json</code> and run <code>{html.escape(self.command('run.json'))}</code>, or load it "
                "in the app (Edit page, \"Load a run\").</p>"
                f"<details><summary>Run record (JSON)</summary><pre>{html.escape(record_json)}</pre></details>"
                f'<script type="application/json" id="sss-run-record">{record_json}</script></section>')

    def command(self, replay_file: str | None = None) -> str:
        """The ``sss-lab`` command line that makes this run again.

        With ``replay_file`` (where this record is saved): ``sss-lab edit --from FILE``, which
        replays it exactly. Without: the same run written as flags, the typed probes as
        ``--paraphrase``/``--neighbour``; it gets the same probes when they are the world's for the
        fact plus the typed ones (``probes_from`` "world" or "typed"), not for a preset's or a data
        file's probes (``command_note`` says so).
        """
        if replay_file is not None:
            return f"sss-lab edit --from {shlex.quote(replay_file)}"
        r = self.case.request
        parts = ["sss-lab", "edit", "--editor", self.editor, "--prompt", r.prompt, "--target", r.target_new]
        if r.subject:
            parts += ["--subject", r.subject]
        for p in self.case.probes[len(self.case.probes) - self.typed_probes:] if self.typed_probes else ():
            parts += ["--paraphrase" if p.group == "paraphrase" else "--neighbour", p.prompt]
        spec = EDITORS[self.editor]
        for key, value in self.overrides().items():
            if key == spec.c_field and spec.c_role == "loss":
                parts += ["--C", f"{value:g}"]
            elif key != spec.c_field:  # a trained editor's C follows from its checkpoint
                parts += ["--set", f"{key}={json.dumps(plain(value))}"]
        if self.model.name != SHIPPED_MODEL_NAME:
            parts += ["--model", self.model.name]
        if self.model.dtype not in (None, "float32"):
            parts += ["--dtype", self.model.dtype]
        a, default = self.analysis, AnalysisOptions()
        for flag, value, base in (("--k", a.k, default.k), ("--metric", a.metric, default.metric),
                                  ("--pooling", a.pooling, default.pooling),
                                  ("--background", a.background, default.background)):
            if value != base:
                parts += [flag, str(value)]
        if a.world_locality:
            parts.append("--world-locality")
        return " ".join(shlex.quote(str(p)) for p in parts)


def _encode(value: Any) -> str:
    """JSON-ready ``value`` as compact URL-safe text: zlib + base64url of its JSON (sorted keys)."""
    raw = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def _decode(text: str) -> Any:
    """The value of ``_encode``'s text. Raises RequestError when the text is not one."""
    try:
        return json.loads(zlib.decompress(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))))
    except (ValueError, zlib.error) as exc:
        raise RequestError(f"the link's run record is damaged ({exc}); open the link again as it was shared") from None


def pack_records(records: list[RunRecord]) -> str:
    """Several records (e.g. a sequential history's steps) as one compact URL-safe text (``unpack_records``)."""
    return _encode([r.compact() for r in records])


def unpack_records(text: str) -> list[RunRecord]:
    """The records of ``pack_records``'s text, each validated. Raises RequestError when the text is not one."""
    value = _decode(text)
    if not isinstance(value, list):
        raise RequestError("the link's run records are damaged (not a list); open the link again as it was shared")
    return [RunRecord.from_dict(d) for d in value]


def plain(value: Any) -> Any:
    """Tuples as lists, recursively (how JSON holds them), so settings compare equal to their JSON round trip."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def digest_of(obj: Any) -> str:
    """16 hex digits of sha256 over ``obj``'s canonical JSON (sorted keys, NaN as null)."""
    text = json.dumps(json.loads(to_json(plain(obj))), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def result_digest(case: EditCase, editor: str, settings: Mapping[str, Any],
                  measures: Mapping[str, Any] | None = None) -> str:
    """The digest a bench result is stored with: the case's content (request and every probe), the
    editor and its full config, and ``measures`` (what else the result line holds, e.g.
    ``{"world_locality": True}``; none: left out, so older digests stay valid). A result whose data
    record, settings or measures changed gets another digest."""
    content = {"case": _case_dict(case), "editor": editor, "settings": dict(settings)}
    return digest_of({**content, "measures": dict(measures)} if measures else content)


def make_record(editor: str, overrides: Mapping[str, Any], case: EditCase, lm=None,
                analysis: AnalysisOptions = AnalysisOptions(), seed: int = 0, probes_from: str = "record",
                model: ModelRef | None = None, typed_probes: int = 0) -> RunRecord:
    """The record of a run of ``editor`` with ``overrides`` on ``case``: the full config, validated.

    ``lm`` (a LoadedModel) names the model and gives its fingerprint; else ``model`` (default:
    the shipped model, fingerprint unknown). Raises RequestError for an unknown editor or
    setting, a setting out of range, or a trained editor's C that no checkpoint has.
    """
    config = editor_config(editor, **dict(overrides))
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    ref = ModelRef.of(lm) if lm is not None else (model or ModelRef())
    return RunRecord(editor, dataclasses.asdict(config), case, ref, analysis, seed, probes_from, typed_probes)


def load_record(text: str) -> RunRecord:
    """The run record in a JSON text: a bare record, or an export that holds one under ``"record"``
    (``sss-lab edit --json``, the app's "Config + results (JSON)"). Raises RequestError when there is none."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"not JSON ({exc}); give a file exported by 'sss-lab edit --json' or the app") from None
    if isinstance(d, dict) and isinstance(d.get("record"), dict):
        d = d["record"]
    return RunRecord.from_dict(d)


def check_model(record: RunRecord, lm) -> None:
    """RequestError when ``lm`` is not the model ``record`` was made on (fingerprints differ)."""
    if record.model.fingerprint is None:
        return
    now = fingerprint(lm.model)
    if now != record.model.fingerprint:
        raise RequestError(f"this run was made on {record.model.name} (weights {record.model.fingerprint}, "
                           f"{record.model.dtype}); the model loaded is {lm.name} (weights {now}): load the "
                           "run's model (--model NAME, and --dtype if it was not float32)")
