"""Input widgets shared by several views: the model, the editor with its C and settings, the request.

``run_edit_with_status`` runs what they picked, showing each stage. Widgets read and write session
state only through app.state; errors become messages (app.messages), never tracebacks.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import re
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import streamlit as st

from app import resources, serving, state
from app.messages import run_with_status, show_error
from app.uploads import MAX_BYTES, parse_upload
from sss_core import analysis
from sss_core.editors import EDITORS, editor_config, shipped_checkpoints
from sss_core.errors import SSSError
from sss_core.evaluation.datasets import load_bytes
from sss_core.evaluation.presets import case_for_request, world_fact_for
from sss_core.models import LoadedModel
from sss_core.record import plain
from sss_core.types import EditCase, EditRequest


# --- model and editor -----------------------------------------------------------------------------

def model_from_state() -> LoadedModel | None:
    """The model named on the Edit page (without drawing its box), or None after showing why."""
    name = st.session_state.get(state.MODEL, state.DEFAULT_MODEL_NAME)
    return _load(name)


def _load(name: str) -> LoadedModel | None:
    """``resources.get_model(name)``, or None after showing why: a model this server does not load is
    refused with ``serving.NotServed``'s message as it is; any other failure as a message."""
    try:
        return resources.get_model(name)
    except serving.NotServed as exc:
        st.error(str(exc), icon=":material/block:")
    except Exception as exc:  # noqa: BLE001 - any load failure is shown, the page stays usable
        show_error(exc, f"Could not load the model {name!r}")
    return None


def model_picker() -> LoadedModel | None:
    """Text box for the model; returns the loaded model or None (after showing why)."""
    state.setdefault(state.MODEL, state.DEFAULT_MODEL_NAME)
    if serving.protected():
        where = (f"this server loads {', '.join(serving.allowed_models())} (its owner adds more with "
                 f"{serving.MODELS_ENV})")
    else:
        where = "or type a local Hugging Face folder or a hub name (needs a network the first time)"
    name = st.text_input("Model", key=state.MODEL,
                         help=f"'default' is the shipped GPT-2 trained on the built-in fact world; {where}")
    lm = _load(name)
    if lm is None:
        return None
    resources.prewarm(name)  # once per model; never raises
    return lm


def has_c(editor: str) -> bool:
    """Does this editor run with an SSS weight C (a C field in its registry entry, used by default)?"""
    return EDITORS[editor].has_c


def _parse_literal(text: str) -> Any:
    """A setting typed as text: a Python literal, None for "none" or nothing, else the text itself."""
    text = text.strip()
    if text.lower() in ("none", ""):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string such as a folder path


def config_widgets(editor: str) -> dict[str, Any]:
    """One widget per setting of the editor's config (C excepted); returns the changed values."""
    spec = EDITORS[editor]
    c_name = analysis.c_field(editor)
    defaults = editor_config(editor)
    hints = typing.get_type_hints(spec.config_cls)
    overrides: dict[str, Any] = {}
    for f in dataclasses.fields(spec.config_cls):
        if f.name == c_name:
            continue
        key, default = state.config_key(editor, f.name), getattr(defaults, f.name)
        tp, help_ = hints.get(f.name, type(default)), f.metadata.get("help")
        if tp is bool:
            state.setdefault(key, bool(default))
            value = st.checkbox(f.name, key=key, help=help_)
        elif tp is int:
            state.setdefault(key, int(default))
            value = int(st.number_input(f.name, key=key, step=1, help=help_))
        elif tp is float:
            state.setdefault(key, float(default))
            step = abs(float(default)) / 10 if default else 0.01
            value = float(st.number_input(f.name, key=key, step=step, format="%g", help=help_))
        elif get_origin(tp) is Literal:
            options = list(get_args(tp))
            state.setdefault(key, default)
            value = st.selectbox(f.name, options, key=key, help=help_)
        else:
            state.setdefault(key, "None" if default is None else str(default))
            value = _parse_literal(st.text_input(f.name, key=key, help=(help_ or "") + " (Python literal; None)"))
        if value != default:
            overrides[f.name] = value
    return overrides


def config_overrides_from_state(editor: str) -> dict[str, Any]:
    """The advanced settings chosen for ``editor`` on the Edit page, without drawing widgets."""
    defaults = editor_config(editor)
    c_name = analysis.c_field(editor)
    out = {}
    for f in dataclasses.fields(EDITORS[editor].config_cls):
        key = state.config_key(editor, f.name)
        if f.name == c_name or key not in st.session_state:
            continue
        value = st.session_state[key]
        if isinstance(value, str) and not isinstance(getattr(defaults, f.name), str):
            value = _parse_literal(value)
        if value != getattr(defaults, f.name):
            out[f.name] = value
    return out


@dataclass(frozen=True)
class EditorChoice:
    """What the editor picker holds: the editor, its C and the settings changed from its defaults."""

    editor: str
    c: float | None  # None when the editor has no C
    overrides: dict[str, Any]


def editor_picker(editor_key: str = state.EDITOR, c_key: str = state.C, advanced: bool = True,
                  label: str = "Editor", only_with_c: bool = False, show_c: bool = True) -> EditorChoice:
    """Editor select box, C slider and (optionally) the advanced settings expander."""
    names = [n for n in EDITORS if has_c(n)] if only_with_c else list(EDITORS)
    default = "ft-l+sss" if "ft-l+sss" in names else names[0]
    if st.session_state.get(editor_key) not in names:
        st.session_state[editor_key] = default
    editor = st.selectbox(label, names, key=editor_key,
                          format_func=lambda n: f"{n} - {EDITORS[n].description}")
    uses_c = has_c(editor) and show_c
    c_name = analysis.c_field(editor)
    state.setdefault(c_key, float(EDITORS[editor].defaults.get(c_name, 0.9) if c_name else 0.9))
    c = None
    if uses_c and EDITORS[editor].c_role == "checkpoint":
        c = _checkpoint_c_picker(editor, c_key)
    elif uses_c:
        c = st.slider("C (weight of the SSS term)", 0.0, 1.0, step=0.05, key=c_key,
                      help="L_all = (1 - C) * L_edit + C * SSS (paper Eq. 10). C = 0 is the editor without "
                           "SSS; C = 1 keeps only the SSS term, which still edits (lambda_max is against the new target)")
    elif show_c:
        st.caption(f"{editor} does not use SSS (C = 0); pick an editor ending in '+sss' to set C.")
    if advanced:
        with st.expander("Advanced: editor settings"):
            st.caption(f"The settings of {editor} ({EDITORS[editor].config_cls.__name__}); defaults as shipped.")
            overrides = config_widgets(editor)
    else:
        overrides = config_overrides_from_state(editor)
    if uses_c:
        overrides[c_name] = float(c)
    return EditorChoice(editor, float(c) if uses_c else None, overrides)


def _checkpoint_c_picker(editor: str, c_key: str) -> float:
    """C of a trained editor: one of its checkpoints' C (``editors.shipped_checkpoints``), never another; a C a
    link or another editor left in ``c_key`` that no checkpoint has is replaced by the entry's own and said."""
    options = [round(c, 2) for c in shipped_checkpoints(editor)]
    own = round(float(EDITORS[editor].defaults.get(EDITORS[editor].c_field, options[-1])), 2)
    held = st.session_state.get(c_key)
    if held not in options:
        if held is not None:
            st.info(f"{editor} is trained: its C is the C of its checkpoint, and its checkpoints have C = "
                    f"{', '.join(f'{c:g}' for c in options)}; C = {float(held):g} has none, so C = {own:g} is used.")
        st.session_state[c_key] = own if own in options else options[-1]
    return float(st.selectbox("C (the C its checkpoint was trained with)", options, key=c_key,
                              format_func=lambda c: f"{c:g}",
                              help="MEND and SERAC learn their edits in training; C weighted the SSS term then. "
                                   "Train another: sss-lab train " + editor.split("+")[0] + " --sss-c C --data world"))


def choice_for(editor: str, c: float | None = None) -> EditorChoice:
    """``editor`` with C (its default when None; ignored for an editor without C) and the advanced
    settings chosen for it on the Edit page."""
    overrides = config_overrides_from_state(editor)
    if not has_c(editor):
        return EditorChoice(editor, None, overrides)
    c_name = analysis.c_field(editor)
    c = float(EDITORS[editor].defaults.get(c_name, 0.9) if c is None else c)
    overrides[c_name] = c
    return EditorChoice(editor, c, overrides)


def editor_from_state(editor_key: str = state.EDITOR, c_key: str = state.C) -> EditorChoice:
    """The editor, C and advanced settings chosen on a page, read from state without drawing widgets
    (a shared link opened on a page that does not draw them, e.g. Projection)."""
    editor = st.session_state.get(editor_key)
    if editor not in EDITORS:
        editor = "ft-l+sss" if "ft-l+sss" in EDITORS else next(iter(EDITORS))
    return choice_for(editor, st.session_state.get(c_key))


# --- the request and its run -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RequestChoice:
    """What the request picker holds; ``build`` turns it into an EditCase (or raises RequestError)."""

    source: str
    prompt: str
    subject: str | None
    target: str
    case: EditCase | None = None  # presets and uploads come as whole cases
    paraphrases: tuple[str, ...] = ()
    neighbours: tuple[str, ...] = ()

    def build(self, lm: LoadedModel) -> EditCase:
        """The EditCase to run (raises RequestError for an unusable typed request)."""
        if self.case is not None:
            return self.case
        request = EditRequest(self.prompt, self.target, subject=self.subject or None).validate()
        return case_for_request(request, self.paraphrases, self.neighbours, lm)

    @property
    def probes_from(self) -> str:
        """Where the run's probes come from, for its record: "world" (a typed world fact, probes as
        ``case_for_request`` makes them), "typed", or "record" (a preset's or an uploaded file's case)."""
        if self.case is not None:
            return "record"
        typed = self.paraphrases or self.neighbours or world_fact_for(self.prompt) is None
        return "typed" if typed else "world"

    def describe(self) -> str:
        """The request in one line: 'prompt' -> 'target'."""
        return f"{self.prompt!r} -> {self.target!r}"


def _preset_label(case: EditCase) -> str:
    """How a preset or uploaded record is listed: prompt -> new target (was the old answer)."""
    r = case.request
    was = f" (was {r.ground_truth})" if r.ground_truth else ""
    return f"{r.prompt} -> {r.target_new}{was}"


def _lines(text: str) -> tuple[str, ...]:
    """The non-empty lines of a text area, stripped."""
    return tuple(line.strip() for line in (text or "").splitlines() if line.strip())


UPLOAD_SKIP = "upload_skip_invalid"  # the "Skip unusable records" checkbox
_UPLOAD_READ = "_upload_read_skipping"  # whether the held upload was read skipping unusable records
_UPLOAD_LEFT_OUT = "_upload_left_out"  # what that reading left out, in one line (None: nothing)


def _read_upload(data: bytes, name: str, skip: bool) -> tuple[list[EditCase], str | None]:
    """The cases of an uploaded file, and what was left out of it in one line (None: nothing).

    ``skip``: only the unusable probes and records are left out (``sss_core.evaluation.datasets.load_bytes``),
    counted and named; otherwise the whole file is refused at its first unusable record (``parse_upload``).

    Raises:
        DataError: as ``parse_upload``; with ``skip``, a file over the upload limit, not JSON, or with no
            usable record.
    """
    if not skip:
        return parse_upload(data, name), None
    loaded = load_bytes(data, Path(name).name or "upload.json", limit=2000, max_bytes=MAX_BYTES, skip_invalid=True)
    return loaded.cases, loaded.summary()


def upload_key(name: str, data: bytes) -> str:
    """What the cases read from an uploaded file are kept under: its name and the sha256 of its content.

    Keyed by content, not by name or size: another file with the same name and size is read again.
    ``key.rsplit(':', 1)[0]`` is the file's name.
    """
    return f"{name}:{hashlib.sha256(data).hexdigest()}"


_TYPED_FOR = "_typed_probes_for"  # (prompt, paraphrases, neighbours) as they were when the probes were last typed


def typed_probes_for(prompt: str, paraphrases: tuple[str, ...], neighbours: tuple[str, ...]) -> str | None:
    """The earlier prompt the typed ``paraphrases`` / ``neighbours`` were typed for, when the prompt has
    changed since they were last edited; else None (also when none is typed).

    Remembers in session state the prompt at which the probes were last changed: editing them (or
    "Keep them for this prompt") ties them to the prompt of that moment; changing only the prompt does not.
    """
    ss = st.session_state
    if not paraphrases and not neighbours:
        ss.pop(_TYPED_FOR, None)
        return None
    held = ss.get(_TYPED_FOR)
    if held is None or tuple(held[1:]) != (paraphrases, neighbours):
        ss[_TYPED_FOR] = (prompt, paraphrases, neighbours)
        return None
    return held[0] if held[0] != prompt else None


def _keep_typed_probes() -> None:
    """Button callback: tie the typed paraphrases and neighbours to the prompt now in the form."""
    ss = st.session_state
    ss[_TYPED_FOR] = ((ss.get(state.TYPED_PROMPT) or "").strip(), _lines(ss.get(state.TYPED_PARAPHRASES, "")),
                      _lines(ss.get(state.TYPED_NEIGHBOURS, "")))


def _clear_typed_probes() -> None:
    """Button callback: clear the typed paraphrases and neighbours."""
    st.session_state[state.TYPED_PARAPHRASES] = st.session_state[state.TYPED_NEIGHBOURS] = ""
    st.session_state.pop(_TYPED_FOR, None)


def typed_probes_message(old_prompt: str, paraphrases: tuple[str, ...], neighbours: tuple[str, ...]) -> str:
    """The notice over typed probes that were typed for ``old_prompt``, not the prompt now in the form."""
    what = " and ".join(w for w, given in (("paraphrases", paraphrases), ("neighbours", neighbours)) if given)
    return (f"These {what} were typed for {old_prompt!r}, not for the prompt above; a run uses them with the "
            "prompt above. Edit them, keep them for this prompt, or clear them.")


def _typed_probes_notice(prompt: str, paraphrases: tuple[str, ...], neighbours: tuple[str, ...]) -> None:
    """Flag typed probes typed for another prompt (``typed_probes_for``), with buttons to keep or clear them."""
    old = typed_probes_for(prompt, paraphrases, neighbours)
    if old is None:
        return
    st.warning(typed_probes_message(old, paraphrases, neighbours), icon=":material/history:")
    keep, clear = st.columns(2)
    keep.button("Keep them for this prompt", key="typed_probes_keep", on_click=_keep_typed_probes)
    clear.button("Clear them", key="typed_probes_clear", on_click=_clear_typed_probes)


def outside_world_hint(prompt: str, subject: str) -> None:
    """Say, for a typed fact on the shipped model, when its subject is not in the built-in world the model
    was trained on (its old answer is then no knowledge of the fact); nothing for another model. Without
    a subject, the prompt's words are looked for instead: a hint only when no world subject occurs in it."""
    if not prompt or not resources.is_shipped_model(st.session_state.get(state.MODEL, "")):
        return
    world = resources.world_names()
    if subject:
        if world.knows(subject):
            return
        what = f"“{subject}” is not in the built-in world"
    else:
        lowered = f" {prompt.lower()} "
        if any(f" {name} " in lowered for name in world.subjects):
            return
        what = "This prompt names no subject of the built-in world"
    examples = ", ".join(list(dict.fromkeys(c.request.subject for c in resources.preset_cases()
                                            if c.request.subject))[:4])
    with st.container(key="outside-world"):
        st.info(f"{what}: the shipped model was trained only on that world ({world.count} subjects, e.g. "
                f"{examples}), so its answer to this prompt is a guess from the world's sentence patterns, not "
                "knowledge of the fact. Pick a world preset, type a fact about a world subject, or load another "
                "model in the Model box.", icon=":material/public_off:")


def probes_caption(case: EditCase) -> str:
    """What a preset's probes are, each kind with its count in the order they come ("paraphrase ×2"), and that the
    edit prompt is scored besides them (so the run's table has one row more)."""
    counts = Counter(analysis.GROUP_LABELS.get(p.group, p.group) for p in case.probes if p.group != "rewrite")
    kinds = ", ".join(f"{kind} ×{n}" if n > 1 else kind for kind, n in counts.items())
    return f"{sum(counts.values())} probes come with it, besides the edit prompt itself: {kinds}."


def request_picker() -> RequestChoice:
    """World preset, typed fact, or a record from an uploaded EasyEdit JSON file."""
    state.setdefault(state.REQ_SOURCE, state.SOURCES[0])
    source = st.radio("Request", state.SOURCES, key=state.REQ_SOURCE, horizontal=True)
    if source == state.SOURCES[0]:
        cases = {c.request.case_id: c for c in resources.preset_cases()}
        if st.session_state.get(state.PRESET) not in cases:
            st.session_state[state.PRESET] = next(iter(cases))
        cid = st.selectbox("Fact from the built-in world (test split)", list(cases), key=state.PRESET,
                           format_func=lambda i: _preset_label(cases[i]))
        case = cases[cid]
        st.caption(probes_caption(case))
        r = case.request
        return RequestChoice(source, r.prompt, r.subject, r.target_new, case)
    if source == state.SOURCES[1]:
        state.setdefault(state.TYPED_PROMPT, "The capital of France is")
        state.setdefault(state.TYPED_SUBJECT, "France")
        state.setdefault(state.TYPED_TARGET, "Rome")
        c1, c2, c3 = st.columns([3, 1.3, 1.3])
        prompt = c1.text_input("Prompt", key=state.TYPED_PROMPT)
        subject = c2.text_input("Subject (as in the prompt)", key=state.TYPED_SUBJECT,
                                help="needed by ROME/MEMIT; leave empty otherwise")
        target = c3.text_input("New target", key=state.TYPED_TARGET)
        with st.expander("Paraphrases and neighbours (optional)"):
            st.caption("A world fact's prompt gets every probe group of the world automatically.")
            paras = st.text_area("Paraphrases, one per line (scored against the new target)",
                                 key=state.TYPED_PARAPHRASES)
            neigh = st.text_area("Neighbour prompts, one per line (should keep their answers)",
                                 key=state.TYPED_NEIGHBOURS)
        _typed_probes_notice(prompt.strip(), _lines(paras), _lines(neigh))
        outside_world_hint(prompt.strip(), subject.strip())
        return RequestChoice(source, prompt.strip(), subject.strip() or None, target.strip(), None,
                             _lines(paras), _lines(neigh))
    upload = st.file_uploader("EasyEdit JSON (CounterFact, ZsRE, ROME's CounterFact, the world's records)",
                              type=["json", "jsonl"], key="upload_file")
    skip = st.checkbox("Skip unusable records", key=UPLOAD_SKIP,
                       help="Keep the usable records of the file: leave out only what cannot be used (a probe, "
                            "else a record whose edit is unusable), each named here")
    if upload is not None:
        held, data = state.uploaded_cases(), upload.getvalue()
        key = upload_key(upload.name, data)
        if held is None or held[0] != key or st.session_state.get(_UPLOAD_READ) != skip:
            try:
                cases, left_out = _read_upload(data, upload.name, skip)
                state.set_uploaded_cases(key, cases)
                st.session_state[_UPLOAD_READ], st.session_state[_UPLOAD_LEFT_OUT] = skip, left_out
                st.session_state[state.UPLOAD_CHOICE] = 0
            except SSSError as exc:
                show_error(exc, f"Could not read {upload.name}")
                if not skip and re.search(r"\brecord \d", str(exc)):
                    st.info("Tick **Skip unusable records** to keep the file's usable records; what is left out "
                            "is then counted and named here.")
                return RequestChoice(source, "", None, "")
        if st.session_state.get(_UPLOAD_LEFT_OUT):
            st.warning(st.session_state[_UPLOAD_LEFT_OUT], icon=":material/filter_alt:")
    held = state.uploaded_cases()
    if held is None:
        st.info("Upload a file to pick a record from it.")
        return RequestChoice(source, "", None, "")
    cases = held[1]
    state.setdefault(state.UPLOAD_CHOICE, 0)
    if st.session_state[state.UPLOAD_CHOICE] >= len(cases):
        st.session_state[state.UPLOAD_CHOICE] = 0
    i = st.selectbox(f"Record ({len(cases)} in {held[0].rsplit(':', 1)[0]})", range(len(cases)),
                     key=state.UPLOAD_CHOICE, format_func=lambda j: f"{j}: {_preset_label(cases[j])}")
    case = cases[i]
    r = case.request
    return RequestChoice(source, r.prompt, r.subject, r.target_new, case)


def request_from_state() -> RequestChoice:
    """The request chosen on the Edit page, read from state without drawing widgets (see
    ``editor_from_state``): the preset, the typed fact (paraphrases and neighbours too) or the record."""
    ss = st.session_state
    source = ss.get(state.REQ_SOURCE, state.SOURCES[0])
    if source == state.SOURCES[1]:
        return RequestChoice(source, (ss.get(state.TYPED_PROMPT) or "").strip(),
                             (ss.get(state.TYPED_SUBJECT) or "").strip() or None,
                             (ss.get(state.TYPED_TARGET) or "").strip(), None,
                             _lines(ss.get(state.TYPED_PARAPHRASES, "")), _lines(ss.get(state.TYPED_NEIGHBOURS, "")))
    held = state.uploaded_cases()
    if source == state.SOURCES[2] and held is not None and held[1]:
        case = held[1][min(int(ss.get(state.UPLOAD_CHOICE, 0)), len(held[1]) - 1)]
    else:
        case = resources.preset_by_id(ss.get(state.PRESET)) or resources.preset_cases()[0]
        source = state.SOURCES[0]
    r = case.request
    return RequestChoice(source, r.prompt, r.subject, r.target_new, case)


def _form_settings(choice: EditorChoice) -> dict[str, Any] | None:
    """The full config the form would run ``choice.editor`` with; None when the form's settings are unusable."""
    try:
        return dataclasses.asdict(editor_config(choice.editor, **choice.overrides))
    except (SSSError, TypeError, ValueError):
        return None


def _same_case(run_case: EditCase, request: RequestChoice) -> bool:
    """Whether the form's request (``request``) would run ``run_case``: the same request and probes.

    A preset's or an uploaded record's case is compared whole; a typed request is compared with the case
    ``case_for_request`` makes of it, its typed neighbours by prompt (their answers are the model's,
    read when it runs).
    """
    if request.case is not None:
        return request.case == run_case
    form = case_for_request(EditRequest(request.prompt, request.target, subject=request.subject or None),
                            request.paraphrases)
    r, f = run_case.request, form.request
    if (r.prompt, r.target_new, r.subject or None) != (f.prompt, f.target_new, f.subject or None):
        return False
    expected = [(p.group, p.prompt, p.answer) for p in form.probes] + [("neighbour", n, None)
                                                                         for n in request.neighbours]
    got = [(p.group, p.prompt, p.answer) for p in run_case.probes]
    return len(got) == len(expected) and all(g[:2] == e[:2] and (e[2] is None or g[2] == e[2])
                                             for g, e in zip(got, expected))


def differs(run: analysis.EditRun, choice: EditorChoice, request: RequestChoice) -> str | None:
    """What ``run`` was made with, when the form (``choice``, ``request``) would now run something else; else None.

    Compares the run's record (``run.record``: editor, full settings, C included, and the case with
    every probe) with what the form would run, so changed advanced settings or typed probes mark the
    results as those of an earlier run; the description names the run's changed settings and probes.
    """
    r, record = run.case.request, run.record
    c = run.c if has_c(run.editor) else None
    base = f"{run.editor}" + (f" C={c:g}" if c is not None else "") + f", {r.prompt!r} -> {r.target_new!r}"
    if record is None:  # an older run without its record: what it still says
        same = (run.editor == choice.editor and r.prompt == request.prompt and r.target_new == request.target
                and (request.case is None or request.case == run.case)
                and (choice.c is None or run.c is None or abs(float(run.c) - choice.c) < 1e-9))
        return None if same else base
    form = _form_settings(choice) if choice.editor == record.editor else None
    settings_differ = form is None or plain(form) != plain(record.settings)
    probes_differ = not _same_case(record.case, request)
    if not settings_differ and not probes_differ:
        return None
    extras, c_field = [], EDITORS[record.editor].c_field
    beside_c = {k: v for k, v in plain(form or {}).items() if k != c_field}
    if form is not None and beside_c != {k: v for k, v in plain(record.settings).items() if k != c_field}:
        changed = {k: v for k, v in record.overrides().items() if k != c_field}  # C is named above
        extras.append("settings " + (", ".join(f"{k}={v!r}" for k, v in changed.items()) or "as shipped"))
    if probes_differ and (r.prompt, r.target_new) == (request.prompt, request.target):
        groups = Counter(p.group for p in record.case.probes)
        extras.append("probes: " + (", ".join(f"{n} {g}" for g, n in groups.items()) or "none"))
    return base + (f" ({'; '.join(extras)})" if extras else "")


def run_and_keep(lm: LoadedModel, choice: EditorChoice, request: RequestChoice, view: str,
                 from_link: bool = False, world: bool = False) -> analysis.EditRun | None:
    """Run one edit (``run_edit_with_status``) and keep it as the session's last run; on failure the
    earlier results stay and ``view`` marks them as earlier (``state.set_failed_attempt``).
    ``from_link``: re-running a shared link's edit, whose point selection is kept; ``world``: also
    measure world locality (every fact of the built-in world before and after)."""
    run = run_edit_with_status(lm, choice, request, view=view, world=world)
    if run is not None:
        state.set_last_run(run, keep_selection=from_link)
    return run


def run_edit_with_status(lm: LoadedModel, choice: EditorChoice, request: RequestChoice,
                         with_background: bool = True, view: str | None = None,
                         world: bool = False) -> analysis.EditRun | None:
    """Run one edit inside st.status, showing each stage; errors become messages. The edit waits its
    turn for the shared model (``serving.st_turn``), saying how many edits are ahead of it.

    ``view``: whose results this run replaces; a failure is recorded there (``state.set_failed_attempt``)
    so the view marks the results still on screen as those of an earlier run.
    """
    def work(progress):
        case = request.build(lm)
        return analysis.analyse_edit(lm, choice.editor, choice.overrides, case,
                                     resources.background_prompts() if with_background else (),
                                     progress=progress, probes_from=request.probes_from, world=world,
                                     typed_probes=0 if request.case is not None else
                                     len(request.paraphrases) + len(request.neighbours))

    return run_with_status(lm.model, f"Editing with {choice.editor}...", f"{choice.editor}, {request.describe()}",
                           work, lambda run: f"Done: edited in {run.seconds_edit:.2f}s, everything measured in "
                                             f"{run.seconds_total:.2f}s", view, "The edit failed")
