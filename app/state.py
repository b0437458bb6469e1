"""Typed accessors over ``st.session_state`` and the URL's query parameters.

Widget values live under the keys named here; results live under private keys ("_run", ...) and are
read and written only through these functions, so a view never spells a session key itself.

The URL carries the request and the open view's inputs (``?prompt=...&target=...&editor=...&C=0.9``,
``a``/``b`` on Compare, ``cs`` on the C sweep, ``steps`` on Sequential, ...), and ``run=1`` when results
were on screen, so a link reproduces a view and its results; ``load_query_params`` reads them once per
session and keeps a line for each invalid value, which the router shows.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

# Widget keys shared between pages. Streamlit forgets a widget's value when a page that does not
# draw it runs; ``keep_widget_values`` re-saves these keys at the top of every run to prevent that.
MODEL = "model_name"
EDITOR = "editor"
C = "C"
REQ_SOURCE = "req_source"
PRESET = "preset"
TYPED_PROMPT, TYPED_SUBJECT, TYPED_TARGET = "typed_prompt", "typed_subject", "typed_target"
TYPED_PARAPHRASES, TYPED_NEIGHBOURS = "typed_paraphrases", "typed_neighbours"
UPLOAD_CHOICE = "upload_choice"
PROJ_METHOD, PROJ_POOLING = "proj_method", "proj_pooling"
PROJ_COLOUR, PROJ_K, PROJ_METRIC = "proj_colour", "proj_k", "proj_metric"
PROJ_K_MAX = 30  # the most nearest neighbours the projection rings and lists
PROJ_N_NEIGHBORS, PROJ_MIN_DIST, PROJ_PERPLEXITY = "proj_n_neighbors", "proj_min_dist", "proj_perplexity"
PROJ_LABELS, PROJ_SEARCH, PROJ_ISOLATED = "proj_labels", "proj_search", "proj_isolated"
STORY_PRESET, STORY_STEP = "story_preset", "story_step"  # the Class story's fact and the step on screen
LINK_STORY_STEP, LINK_STORY = "_link_story_step", "_link_story_records"  # a story link's step (1-5) and run records
PERSISTENT = (MODEL, EDITOR, C, REQ_SOURCE, PRESET, TYPED_PROMPT, TYPED_SUBJECT, TYPED_TARGET, TYPED_PARAPHRASES,
              TYPED_NEIGHBOURS, UPLOAD_CHOICE, PROJ_METHOD, PROJ_POOLING, PROJ_COLOUR, PROJ_K, PROJ_METRIC,
              PROJ_N_NEIGHBORS, PROJ_MIN_DIST, PROJ_PERPLEXITY, PROJ_LABELS, PROJ_SEARCH, STORY_PRESET, STORY_STEP, "cmp_editor_a", "cmp_c_a", "cmp_editor_b",
              "cmp_c_b", "sweep_editor", "sweep_cs", "seq_editor", "seq_c", "results_dir",
              "hyp_source", "hyp_editors", "hyp_n", "hyp_seed", "hyp_k", "hyp_layer", "hyp_folder_typed")
CONFIG_PREFIX = "cfg:"  # advanced editor settings: "cfg:<editor>:<field>"

SOURCES = ("World preset", "Type a fact", "Upload EasyEdit JSON")
DEFAULT_MODEL_NAME = "default"


def config_key(editor: str, field: str) -> str:
    """The session-state key of one editor setting's widget, e.g. ``cfg:ft-l:lr``."""
    return f"{CONFIG_PREFIX}{editor}:{field}"


def keep_widget_values() -> None:
    """Re-save shared widget values so they survive a switch to a page that does not draw them."""
    ss = st.session_state
    for key in list(ss.keys()):
        if key in PERSISTENT or str(key).startswith(CONFIG_PREFIX):
            ss[key] = ss[key]


def setdefault(key: str, value: Any) -> None:
    """Give a widget its first value through session state (never both this and ``value=``)."""
    if key not in st.session_state:
        st.session_state[key] = value


# --- query parameters ------------------------------------------------------------------------------
# A shared link carries the request and every view's inputs; ``run=1`` says results were on screen,
# so the view the link opens re-runs them (edits are cheap to redo and the model is never left edited).
# Each query key maps to the widget's session key and a kind that says how it is checked.

@dataclass(frozen=True)
class LinkField:
    """One query parameter of a shared link: its widget's session key and its kind (how it is checked)."""

    query: str
    key: str
    kind: str  # "editor", "c", "method", "pooling", "distance", "cs", "index", "steps", "record", "k",
    # "flag", "indices", or a projection parameter ("n_neighbors", "min_dist", "perplexity")


LINK_RECORD, LINK_RECORD_B = "_link_record", "_link_record_b"  # a link's run records (sss_core.record.RunRecord)
LINK_STEPS = "_link_step_records"  # a link's sequential history: one run record per step
LINK_SETTINGS = "_link_settings"  # a link's advanced settings per editor: {editor: {field: value}}


LINK_FIELDS = (
    LinkField("editor", EDITOR, "editor"), LinkField("C", C, "c"),
    LinkField("proj", PROJ_METHOD, "method"), LinkField("pool", PROJ_POOLING, "pooling"),
    LinkField("sel", "proj_selected", "index"),
    LinkField("a", "cmp_editor_a", "editor"), LinkField("ca", "cmp_c_a", "c"),
    LinkField("b", "cmp_editor_b", "editor"), LinkField("cb", "cmp_c_b", "c"),
    LinkField("sweep", "sweep_editor", "editor"), LinkField("cs", "sweep_cs", "cs"),
    LinkField("seq", "seq_editor", "editor"), LinkField("seqC", "seq_c", "c"),
    LinkField("steps", "_link_steps", "steps"),
    LinkField("rec", LINK_RECORD, "record"), LinkField("recb", LINK_RECORD_B, "record"),
    LinkField("hyp", "hyp_editors", "editors"), LinkField("hn", "hyp_n", "count"),
    LinkField("hseed", "hyp_seed", "count"), LinkField("hk", "hyp_k", "count"),
    LinkField("hlayer", "hyp_layer", "count"),
    LinkField("hsrc", "hyp_source", "text"), LinkField("hdir", "hyp_folder_typed", "text"),
    LinkField("hcfg", LINK_SETTINGS, "settings"), LinkField("dir", "results_dir", "text"),
    LinkField("seqrec", LINK_STEPS, "records"),
    LinkField("ra", "rip_editor_a", "editor"), LinkField("rca", "rip_c_a", "c"),
    LinkField("rb", "rip_editor_b", "editor"), LinkField("rcb", "rip_c_b", "c"),
    LinkField("rpool", "rip_pooling", "pooling"), LinkField("rdist", "rip_metric", "distance"),
    LinkField("rproj", "rip_method", "method"),
    LinkField("pk", PROJ_K, "k"), LinkField("pdist", PROJ_METRIC, "distance"),
    LinkField("pnn", PROJ_N_NEIGHBORS, "n_neighbors"), LinkField("pmd", PROJ_MIN_DIST, "min_dist"),
    LinkField("pperp", PROJ_PERPLEXITY, "perplexity"), LinkField("plabels", PROJ_LABELS, "flag"),
    LinkField("pfind", PROJ_SEARCH, "text"), LinkField("piso", PROJ_ISOLATED, "indices"),
    LinkField("story", STORY_PRESET, "text"), LinkField("sstep", LINK_STORY_STEP, "count"),
    LinkField("srec", LINK_STORY, "records"),
)
REQUEST_KEYS = ("prompt", "subject", "target")
QUERY_KEYS = REQUEST_KEYS + tuple(f.query for f in LINK_FIELDS) + ("run",)
C_GRID = tuple(round(0.05 * i, 2) for i in range(21))  # the C values the sweep offers


def _parse_c(text: str) -> float:
    """A C from a link: a number in [0, 1] (ValueError otherwise)."""
    c = float(text)
    if math.isnan(c) or not 0.0 <= c <= 1.0:
        raise ValueError(f"{text} is outside 0..1")
    return c


def parse_link_value(field_: LinkField, text: str, editors, methods, poolings=("last", "mean")) -> Any:
    """The widget value a link's ``text`` stands for; ValueError saying why it is not valid."""
    if field_.kind == "editor":
        if text not in editors:
            raise ValueError(f"{text!r} is not an editor here (choose from {', '.join(editors)})")
        return text
    if field_.kind == "c":
        try:
            return round(_parse_c(text), 2)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a C between 0 and 1") from exc
    if field_.kind == "method":
        if text not in methods:
            raise ValueError(f"{text!r} is not a projection method (choose from {', '.join(methods)})")
        return text
    if field_.kind == "distance":
        if text not in ("euclidean", "cosine"):
            raise ValueError(f"{text!r} is not a distance (choose from euclidean, cosine)")
        return text
    if field_.kind == "pooling":
        if text not in poolings:
            raise ValueError(f"{text!r} is not a sentence embedding (choose from {', '.join(poolings)})")
        return text
    if field_.kind == "cs":
        values = []
        for part in text.split(","):
            c = round(_parse_c(part), 2) if part.strip() else None
            if c is None or c not in C_GRID:
                raise ValueError(f"{part!r} is not one of the sweep's C values (0, 0.05, ..., 1)")
            values.append(c)
        return sorted(set(values))
    if field_.kind == "index":
        if not text.isdigit():
            raise ValueError(f"{text!r} is not a point number")
        return int(text)
    if field_.kind in ("k", "flag", "indices", "n_neighbors", "min_dist", "perplexity"):
        return _parse_projection_value(field_.kind, text)
    if field_.kind == "editors":
        names = [n for n in text.split(",") if n]
        bad = [n for n in names if n not in editors]
        if bad or not names:
            raise ValueError(f"{(bad or [text])[0]!r} is not an editor here (choose from {', '.join(editors)})")
        return names
    if field_.kind == "count":
        if not text.isdigit() or int(text) > 100_000:
            raise ValueError(f"{text!r} is not a whole number from 0 to 100000")
        return int(text)
    if field_.kind == "settings":
        return _parse_settings(text, editors)
    if field_.kind == "records":
        from sss_core.errors import SSSError
        from sss_core.record import unpack_records

        try:
            return unpack_records(text)
        except SSSError as exc:
            raise ValueError(f"the history's run records in the link cannot be replayed: {exc}") from exc
    if field_.kind == "record":
        from sss_core.errors import SSSError
        from sss_core.record import RunRecord

        try:
            return RunRecord.from_link(text)
        except SSSError as exc:
            raise ValueError(f"the run record in the link cannot be replayed: {exc}") from exc
    if field_.kind == "steps":
        steps = []
        for part in text.split(","):
            editor, _, case_id = part.partition(":")
            if editor not in editors or not case_id:
                raise ValueError(f"{part!r} is not an edit of the history (editor:preset id)")
            steps.append((editor, case_id))
        return steps
    return text


@dataclass(frozen=True)
class SharedParams:
    """What a shared link carried: the request, the widget values it set, and what was invalid."""

    prompt: str | None = None
    subject: str | None = None
    target: str | None = None
    values: dict = field(default_factory=dict)  # session key -> value
    problems: tuple[str, ...] = ()  # one line per invalid value, for the user
    run: bool = False  # results were on screen when the link was made

    @property
    def editor(self) -> str | None:
        """The Edit page's editor the link named (None if it named none or an invalid one)."""
        return self.values.get(EDITOR)

    @property
    def c(self) -> float | None:
        """The Edit page's C the link named (None if it named none or an invalid one)."""
        return self.values.get(C)


def read_query_params(editors=(), methods=("pca", "umap", "tsne")) -> SharedParams:
    """The shared-link parameters of the URL, checked; every invalid one is left out and named."""
    qp = st.query_params
    values, problems = {}, []
    for f in LINK_FIELDS:
        if f.query in qp and qp[f.query] != "":
            try:
                values[f.key] = parse_link_value(f, qp[f.query], editors, methods)
            except ValueError as exc:
                shown = qp[f.query] if len(qp[f.query]) <= 60 else qp[f.query][:57] + "..."
                problems.append(f"{f.query}={shown}: {exc}")
    return SharedParams(qp.get("prompt") or None, qp.get("subject") or None, qp.get("target") or None,
                        values, tuple(problems), qp.get("run") == "1")


def load_query_params(preset_for, editors, methods=("pca", "umap", "tsne")) -> SharedParams | None:
    """Once per session: put a shared link's request and every view's values into the widgets' state.

    ``preset_for(prompt, target)`` returns a preset id or None; ``editors`` are the valid names.
    Invalid values are kept out of the widgets and listed by ``link_problems`` for the user.
    """
    if st.session_state.get("_qp_loaded"):
        return None
    st.session_state["_qp_loaded"] = True
    params = read_query_params(editors, methods)
    for key, value in params.values.items():
        st.session_state[key] = value
    if LINK_SETTINGS in params.values:
        put_settings_in_widgets(params.values[LINK_SETTINGS])
    if params.prompt and params.target:
        preset = preset_for(params.prompt, params.target)
        if preset is not None:
            st.session_state[REQ_SOURCE] = SOURCES[0]
            st.session_state[PRESET] = preset
        else:
            st.session_state[REQ_SOURCE] = SOURCES[1]
            st.session_state[TYPED_PROMPT] = params.prompt
            st.session_state[TYPED_TARGET] = params.target
            st.session_state[TYPED_SUBJECT] = params.subject or ""
    elif params.prompt or params.target:
        params = dataclasses.replace(params, problems=params.problems + (
            "the link has a prompt without a target, or a target without a prompt: the request was not set",))
    st.session_state["_link_problems"] = list(params.problems)
    st.session_state["_link_run"] = params.run
    return params


def link_problems() -> list[str]:
    """The invalid values of the link this session was opened with (empty once dismissed)."""
    return st.session_state.get("_link_problems", [])


def dismiss_link_problems() -> None:
    """Forget the link's problems (the user has seen them)."""
    st.session_state["_link_problems"] = []


def take_link_run() -> bool:
    """True once, for the first view drawn after opening a link made while results were on screen."""
    return bool(st.session_state.pop("_link_run", False))


def link_steps() -> list[tuple[str, str]]:
    """(editor, preset id) of a shared Sequential history still to replay; emptied by the caller."""
    return st.session_state.get("_link_steps", [])


def clear_link_steps() -> None:
    """The shared Sequential history has been replayed (or given up on)."""
    st.session_state.pop("_link_steps", None)


def _parse_projection_value(kind: str, text: str) -> Any:
    """A projection control's value from a link (kinds "k", "flag", "indices" and the parameters of
    ``sss_core.projection.PARAMETERS``); ValueError saying why it is not valid."""
    if kind == "k":
        if not text.isdigit() or not 1 <= int(text) <= PROJ_K_MAX:
            raise ValueError(f"{text!r} is not a number of neighbours (a whole number from 1 to {PROJ_K_MAX})")
        return int(text)
    if kind == "flag":
        if text not in ("0", "1"):
            raise ValueError(f"{text!r} is not on or off (1 or 0)")
        return text == "1"
    if kind == "indices":
        parts = text.split(",")
        if len(parts) < 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"{text!r} is not a list of at least two point numbers (e.g. 0,4,7)")
        return sorted({int(p) for p in parts})
    from sss_core.projection import parse_parameter

    return parse_parameter(kind, text)  # ProjectionError is a ValueError


def _parse_settings(text: str, editors) -> dict[str, dict[str, Any]]:
    """A link's settings per editor ({editor: {field: value}}, compact JSON); ValueError when not valid."""
    import json

    from sss_core.editors import editor_config
    from sss_core.errors import SSSError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not readable settings ({exc})") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("not readable settings (expected {editor: {setting: value}})")
    for name, overrides in value.items():
        if name not in editors:
            raise ValueError(f"{name!r} is not an editor here")
        try:
            editor_config(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
        except SSSError as exc:
            raise ValueError(str(exc)) from None
    return value


def put_settings_in_widgets(settings: dict[str, dict[str, Any]]) -> None:
    """A link's advanced settings into the Edit page's widgets (``config_key``), as the user would set them."""
    for name, overrides in settings.items():
        for field_name, value in overrides.items():
            st.session_state[config_key(name, field_name)] = (
                value if isinstance(value, (bool, int, float)) else "None" if value is None else
                str(tuple(value) if isinstance(value, list) else value))


def _fmt_link(f: LinkField, value: Any) -> str:
    """How a widget value is written in the URL (the inverse of ``parse_link_value``)."""
    if f.kind == "c":
        return f"{float(value):g}"
    if f.kind == "cs":
        return ",".join(f"{float(c):g}" for c in value)
    if f.kind == "steps":
        return ",".join(f"{e}:{cid}" for e, cid in value)
    if f.kind == "editors":
        return ",".join(value)
    if f.kind == "flag":
        return "1" if value else "0"
    if f.kind == "indices":
        return ",".join(str(int(i)) for i in value)
    if f.kind in ("min_dist", "perplexity"):
        return f"{float(value):g}"
    if f.kind == "settings":
        import json

        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def write_link(prompt: str | None, subject: str | None, target: str | None, values: dict[str, Any],
               ran: bool = False) -> None:
    """Mirror the request and this view's values (query key -> value; None left out) in the URL.

    ``ran``: results are on screen, so a link opened later re-runs them. Writes only on a change.
    """
    by_query = {f.query: f for f in LINK_FIELDS}
    new = {k: v for k, v in (("prompt", prompt), ("subject", subject), ("target", target)) if v}
    for q, value in values.items():
        if value is not None and value != [] and value != "":
            new[q] = _fmt_link(by_query[q], value)
    if ran:
        new["run"] = "1"
    current = {k: st.query_params.get(k) for k in st.query_params}
    if current != new:
        st.query_params.from_dict(new)


def write_query_params(prompt: str | None, subject: str | None, target: str | None, editor: str,
                       c: float | None, ran: bool = False, **extra: Any) -> None:
    """The Edit page's link: request, editor, C and ``extra`` (query key -> value); see ``write_link``."""
    write_link(prompt, subject, target, {"editor": editor, "C": c, **extra}, ran=ran)


# --- results of this session ---------------------------------------------------------------------

def last_run():
    """The last EditRun of this session (sss_core.analysis.EditRun) or None."""
    return st.session_state.get("_run")


def set_last_run(run, keep_selection: bool = False) -> None:
    """Keep ``run`` as this session's last edit; the projections (and, unless ``keep_selection``:
    a shared link's selection, the point selected) of the one before are dropped."""
    st.session_state["_run"] = run
    st.session_state["_projections"] = {}
    if not keep_selection:
        st.session_state.pop("proj_selected", None)
        st.session_state.pop("_proj_lasso", None)
        st.session_state.pop(PROJ_ISOLATED, None)


def story():
    """The Class story's runs of this session (``app.panels.story.Story``), or None."""
    return st.session_state.get("_story")


def set_story(value) -> None:
    """Keep the Class story's runs (see ``story``)."""
    st.session_state["_story"] = value


def open_records(first, second=None) -> None:
    """Have the next view drawn replay the run record ``first`` (and, on Compare, ``second`` as B), as a
    link with run records does (``LINK_RECORD``, ``LINK_RECORD_B``); the caller switches to that view."""
    ss = st.session_state
    ss[LINK_RECORD] = first
    if second is None:
        ss.pop(LINK_RECORD_B, None)
    else:
        ss[LINK_RECORD_B] = second
    ss["_link_run"] = True


def projection_cache() -> dict:
    """(run_id, method, pooling) -> sss_core.projection.Projection, for the last run only."""
    return st.session_state.setdefault("_projections", {})


def compare_runs() -> tuple | None:
    """The (A, B) EditRuns of the last comparison in this session, or None."""
    return st.session_state.get("_compare")


def set_compare_runs(runs: tuple) -> None:
    """Keep the (A, B) EditRuns of a comparison (the sentence selected in the earlier pair's projection is dropped)."""
    st.session_state["_compare"] = runs
    st.session_state.pop("cmp_selected", None)


@dataclass(frozen=True)
class SweepState:
    """The C sweep view's last sweep: the editor, the request and one point per C (``analysis.SweepPoint``,
    each with its run record)."""

    editor: str
    request: Any  # sss_core.types.EditRequest
    points: tuple  # (analysis.SweepPoint, ...), in the order of ``cs``
    cs: tuple[float, ...]


def sweep() -> SweepState | None:
    """The last C sweep of this session (``SweepState``), or None."""
    return st.session_state.get("_sweep")


def set_sweep(value: SweepState) -> None:
    """Keep the last C sweep (see ``sweep``)."""
    st.session_state["_sweep"] = value


def sequential_history() -> list:
    """The SequentialStep list of this session (the model itself is never left edited)."""
    return st.session_state.setdefault("_seq_history", [])


def sequential_baseline():
    """The SequentialBaseline of this session's history (the unedited model's predictions), or None."""
    return st.session_state.get("_seq_baseline")


def set_sequential_baseline(baseline) -> None:
    """Keep the baseline that later steps of the history are compared with."""
    st.session_state["_seq_baseline"] = baseline


def reset_sequential() -> None:
    """Forget this session's sequential history and its baseline."""
    st.session_state["_seq_history"] = []
    st.session_state.pop("_seq_baseline", None)


def uploaded_cases() -> tuple[str, list] | None:
    """(key, [EditCase]) of the last EasyEdit file uploaded, or None; the key is "name:sha256 of the
    content" (``inputs.upload_key``), so ``key.rsplit(':', 1)[0]`` is the file's name."""
    return st.session_state.get("_uploaded")


def set_uploaded_cases(key: str, cases: list) -> None:
    """Keep the cases read from an uploaded file under ``key``: its name and content hash (see ``uploaded_cases``)."""
    st.session_state["_uploaded"] = (key, cases)


def failed_attempt(view: str) -> str | None:
    """The error of ``view``'s last attempt if it failed after results were last set, else None."""
    return st.session_state.get(f"_failed:{view}")


def set_failed_attempt(view: str, message: str | None) -> None:
    """Record that ``view``'s last run failed (``message``) or, with None, that it succeeded."""
    if message is None:
        st.session_state.pop(f"_failed:{view}", None)
    else:
        st.session_state[f"_failed:{view}"] = message


def hypothesis_job():
    """The Hypothesis view's job of world edits (app.hypothesis.HypothesisJob), or None."""
    return st.session_state.get("_hyp_job")


def set_hypothesis_job(job) -> None:
    """Keep ``job`` as the Hypothesis view's job (replacing the one before)."""
    st.session_state["_hyp_job"] = job


def stop_hypothesis() -> None:
    """Stop the Hypothesis view's job after the edit in progress (a button's callback)."""
    job = hypothesis_job()
    if job is not None:
        job.stopped = True


def resume_hypothesis() -> None:
    """Let a stopped job of the Hypothesis view go on where it stopped (a button's callback)."""
    job = hypothesis_job()
    if job is not None:
        job.stopped = False


def open_in_edit(prompt: str, subject: str | None, target: str, editor: str, c: float | None,
                 preset: str | None = None) -> None:
    """Put an edit into the Edit view's widgets, as a shared link does, and have the Edit view run it.

    ``preset``: the id of the world preset with this prompt and target (it is chosen then);
    otherwise the prompt, subject and target are typed (a world fact's prompt gets its probes).
    The caller switches to the Edit page.
    """
    ss = st.session_state
    if preset is not None:
        ss[REQ_SOURCE], ss[PRESET] = SOURCES[0], preset
    else:
        ss[REQ_SOURCE], ss[TYPED_PROMPT], ss[TYPED_TARGET] = SOURCES[1], prompt, target
        ss[TYPED_SUBJECT] = subject or ""
        ss[TYPED_PARAPHRASES] = ss[TYPED_NEIGHBOURS] = ""  # the world's probes only, none left from before
    ss[EDITOR] = editor
    if c is not None:
        ss[C] = round(float(c), 2)
    ss["_link_run"] = True  # the Edit view takes it with take_link_run() and runs the edit
