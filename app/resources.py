"""Loaders cached across sessions (``st.cache_resource``): the model, the world's presets, UMAP warm-up.

Everything cached here is shared by every browser session, so it is either immutable (presets) or
guarded: the model is only ever edited under ``sss_core.editors.base.model_lock`` and reverted before
the lock is released (see sss_core.analysis).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
import torch

from app import serving
from sss_core.analysis import analyse_edit
from sss_core.editors.memit import MEMITConfig
from sss_core.editors.rome import ROMEConfig
from sss_core.editors.stats import key_second_moments
from sss_core.evaluation.presets import presets
from sss_core.models import DEFAULT_MODEL, LoadedModel, load_model
from sss_core.projection import project, warm_up_umap
from sss_core.types import EditCase

log = logging.getLogger(__name__)
N_PRESETS = 60
N_BACKGROUND = 30
WARMUP_ENV = "SSS_LAB_UMAP_WARMUP"  # "0" turns the start-up warm-ups off (UMAP, edit, key statistics; the app tests do)
MODEL_ENV = "SSS_LAB_MODEL"  # what "default" means when set (a folder or hub name); else the shipped model
THREADS_ENV = "SSS_LAB_TORCH_THREADS"  # CPU threads for torch: a number, or "auto" (the default)
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before the app changes it, for models that want the default
SMALL_MODEL = 50_000_000  # parameters; below this, one CPU thread is as fast and far steadier


def model_path(name: str) -> str:
    """'default' (or empty) is the shipped model (or $SSS_LAB_MODEL); anything else is a folder or a hub name."""
    name = (name or "").strip()
    if name in ("", "default"):
        return os.environ.get(MODEL_ENV) or str(DEFAULT_MODEL)
    return name


def is_shipped_model(name: str) -> bool:
    """Is the model box's ``name`` the shipped model (``DEFAULT_MODEL``, trained on the built-in world only)?
    "default" is not when $SSS_LAB_MODEL names another model."""
    path = Path(model_path(name))
    return path.exists() and path.resolve() == DEFAULT_MODEL.resolve()


@dataclass(frozen=True)
class WorldNames:
    """The subjects of the built-in world's facts and their aliases (``default_world()``), lower-cased."""

    subjects: frozenset[str]
    count: int  # subjects of the world's facts (aliases not counted)

    def knows(self, subject: str) -> bool:
        """Is ``subject`` (any case, spaces around ignored) a subject or an alias in the world?"""
        return subject.strip().lower() in self.subjects


@st.cache_resource(show_spinner=False)
def world_names() -> WorldNames:
    """The built-in world's subjects and aliases (see WorldNames), built once per process."""
    from sss_core.evaluation.presets import default_world

    world = default_world()
    subjects = {f.subject for f in world.facts}
    names = subjects | {a for names in world.aliases.values() for a in names}
    return WorldNames(frozenset(n.lower() for n in names), len(subjects))


def torch_threads(lm: LoadedModel) -> int | None:
    """The CPU thread count the app gives torch for ``lm`` (None: leave torch's default).

    $SSS_LAB_TORCH_THREADS=N forces N. With "auto" (the default) a small model on the CPU gets one
    thread: its matrices are too small for intra-op parallelism to pay, and on a busy 2-core machine
    two spinning OpenMP threads made an edit 2-4x slower in our measurements (docs/app.md).
    """
    value = os.environ.get(THREADS_ENV, "auto").strip().lower()
    if value != "auto":
        try:
            return max(1, int(value))
        except ValueError:
            log.warning("%s=%r is not a number or 'auto'; ignored", THREADS_ENV, value)
            return None
    small = sum(p.numel() for p in lm.model.parameters()) < SMALL_MODEL
    return 1 if small and lm.device.type == "cpu" else None


def get_model(name: str) -> LoadedModel:
    """The model ``name`` (see model_path), loaded once per process, when this server may load it.

    Raises:
        serving.NotServed: a model outside the server's list (``serving.check_model``) when it is
            served to a class; nothing is loaded.
        ModelLoadError: the model cannot be loaded.
    """
    return _load_model(serving.check_model(name, model_path))


@st.cache_resource(show_spinner="Loading the model (once for all sessions)...", max_entries=2)
def _load_model(name: str) -> LoadedModel:
    """The model ``name`` (see model_path), loaded once per process. Raises ModelLoadError."""
    lm = load_model(model_path(name))
    threads = torch_threads(lm) or TORCH_DEFAULT_THREADS  # the setting is per process: set it either way
    torch.set_num_threads(threads)
    log.info("torch uses %d CPU thread(s) for %s", threads, lm.name)
    return lm


def _warm_edit(lm: LoadedModel) -> None:
    """One tiny edit and one figure, so the user's first Run pays no first-call costs.

    The first autograd double backward, the first plotly figure and the first DataFrame conversion
    in a process each cost seconds. The edit holds the model's lock for about a second.
    """
    import pandas as pd
    import plotly.graph_objects as go

    run = analyse_edit(lm, "ft-l+sss", {"steps": 2}, preset_cases()[0], background_prompts()[:4])
    emb = run.embeddings["last"]
    proj = project(emb.before, emb.after)
    go.Figure(go.Scatter(x=proj.before[:, 0], y=proj.before[:, 1])).to_json()
    pd.DataFrame([r.as_dict() for r in run.rows]).to_string()


def _warm_statistics(lm: LoadedModel) -> None:
    """ROME's and MEMIT's key statistics C at their default layers, computed once per machine and cached
    on disk (about 10 s on one CPU thread for the shipped model): then no user's first ROME or MEMIT
    edit waits for them. The model's lock is taken per batch, so edits of other sessions go on meanwhile."""
    for cfg, layers in ((ROMEConfig(), [ROMEConfig().layer]), (MEMITConfig(), list(MEMITConfig().layers))):
        key_second_moments(lm.model, lm.tok, layers, texts=cfg.mom2_text, n_samples=cfg.mom2_n_samples,
                           cache_dir=cfg.stats_dir)


def warm_hypothesis(lm: LoadedModel) -> None:
    """The Hypothesis view's k-NN reference (every world prompt embedded: about 2.4 s on one CPU thread for the
    shipped model, kept while the weights are the same) and its statistics' scipy.stats (0.3-0.8 s to import):
    then the view's first Run pays neither. Raises what ``KnnReference`` raises (ValueError: fewer than 2 world
    prompts fit the model)."""
    import scipy.stats  # noqa: F401 - imported for its cost, off the first page (tests/app/test_launch.py)

    from sss_core.evaluation.hypothesis import KnnReference, reference_prompts
    KnnReference(lm.model, lm.tok, reference_prompts("world", []))


def _prewarm_body(lm: LoadedModel, w: WarmUp) -> None:
    """The warm-up thread: the tiny edit, the key statistics, then the Hypothesis view's reference; records the
    seconds or the error in ``w``."""
    try:
        _warm_edit(lm)
        _warm_statistics(lm)
        warm_hypothesis(lm)
        w.seconds = time.time() - w.started
        log.info("warm-up (edit, key statistics, k-NN reference) took %.2fs", w.seconds)
    except Exception as exc:  # noqa: BLE001 - e.g. a model FT-L cannot edit: only the first run is slower
        w.error = str(exc)
        log.info("warm-up skipped for %s: %s", lm.name, exc)
    finally:
        w.done.set()


@st.cache_resource(show_spinner=False)
def prewarm(name: str) -> "WarmUp":
    """Start warming model ``name`` up in a background thread, once per model and process; never raises.

    The page does not wait for it (first paint and the form come at once); a Run pressed meanwhile
    waits at most for the tiny edit's lock. $SSS_LAB_UMAP_WARMUP=0 turns it off (the app tests do).
    """
    w = WarmUp()
    if os.environ.get(WARMUP_ENV, "1") == "0":
        w.error = f"disabled by {WARMUP_ENV}=0"
        w.done.set()
        return w
    try:
        lm = get_model(name)
    except Exception as exc:  # noqa: BLE001 - the page shows the load error itself
        w.error = str(exc)
        w.done.set()
        return w
    threading.Thread(target=_prewarm_body, args=(lm, w), name="model-warmup", daemon=True).start()
    return w


@st.cache_resource(show_spinner=False)
def preset_cases() -> tuple[EditCase, ...]:
    """The world's test edits offered as presets, real countries and cities first (immutable, shared)."""
    return tuple(presets("test", N_PRESETS, real_first=True))


@st.cache_resource(show_spinner=False)
def background_prompts() -> tuple[str, ...]:
    """Prompts of other world facts, drawn in the projection as background."""
    return tuple(c.request.prompt for c in presets("validation", N_BACKGROUND))


@st.cache_resource(show_spinner=False)
def sequential_probe_cases() -> tuple[EditCase, ...]:
    """World facts whose predictions the Sequential view watches as edits accumulate."""
    return tuple(presets("validation", 40))


def preset_by_id(case_id: str | None) -> EditCase | None:
    """The preset with this case id, or None (also for None)."""
    return next((c for c in preset_cases() if c.request.case_id == case_id), None)


def preset_for(prompt: str, target: str) -> str | None:
    """The id of the preset with this prompt and target, if there is one."""
    return next((c.request.case_id for c in preset_cases()
                 if c.request.prompt == prompt and c.request.target_new == target), None)


@dataclass
class WarmUp:
    """State of the one UMAP warm-up of this process (filled in by its thread)."""

    done: threading.Event = field(default_factory=threading.Event)
    seconds: float | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)


def _warm(w: WarmUp) -> None:
    """Compile UMAP once (the body of the warm-up thread); records the seconds or the error in ``w``."""
    try:
        w.seconds = warm_up_umap()
    except Exception as exc:  # noqa: BLE001 - a failed warm-up only means the first UMAP is slow
        w.error = str(exc)
        log.warning("UMAP warm-up failed: %s", exc)
    finally:
        w.done.set()


@st.cache_resource(show_spinner=False)
def umap_warmup() -> WarmUp:
    """Start compiling UMAP's numba kernels in a background thread, once per process.

    The first UMAP fit in a process costs 10-15 s of numba compilation; the Projection panel calls
    this when it first draws, so the cost is paid while the user reads the first results.
    """
    w = WarmUp()
    if os.environ.get(WARMUP_ENV, "1") == "0":
        w.error = f"disabled by {WARMUP_ENV}=0"
        w.done.set()
        return w
    threading.Thread(target=_warm, args=(w,), name="umap-warmup", daemon=True).start()
    return w


def list_report_dirs(roots: tuple[str, ...] | None = None) -> list[str]:
    """Folders under ``roots`` (relative to the working directory; default: the folders this server
    shows, ``serving.results_roots()``) that hold bench output files and that the server may show
    (a link under runs/ to a folder elsewhere is left out when it is served to a class)."""
    found = []
    for root in serving.results_roots() if roots is None else roots:
        base = Path(root)
        if not base.is_dir():
            continue
        for d in sorted([base, *[p for p in base.rglob("*") if p.is_dir()]]):
            if any(f.suffix in (".jsonl", ".csv", ".md", ".html") for f in d.iterdir() if f.is_file()):
                found.append(str(d))
    return [d for d in dict.fromkeys(found) if serving.allowed_folder(d)][:200]
