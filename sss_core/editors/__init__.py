"""Every editor, listed once. ``make_editor(name, **overrides)`` builds one by name.

An entry (``EditorSpec``) carries everything the CLI, the app and the tests need: the editor's
class and config, which config field holds C, and for a trained editor its trainer and train
config. ``register_editor`` adds one, as PEFT's ``register_peft_method`` does: a name is
registered once, a second registration is refused. A new editor is one file plus one line in
``_BUILT_IN`` below (or a ``register_editor`` call in the user's own code).

Example:
    >>> editor = make_editor("ft-l+sss", sss_c=0.5, steps=40)
    >>> spec = EDITORS["mend"]
    >>> spec.trainer(lm, examples, "out", train_config("mend", steps=200))
"""

from __future__ import annotations

import dataclasses
import json
import threading
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from weakref import WeakKeyDictionary

from ..errors import RequestError
from .base import Edit, EditBase, Editor, WeightEdit
from .ftl import FTL, FTLConfig
from .memit import MEMIT, MEMITConfig
from .mend import MEND, MENDConfig, MENDTrainConfig, train_mend
from .rome import ROME, ROMEConfig
from .serac import SERAC, SERACConfig, SERACTrainConfig, train_serac
from .training import ASSETS, Trainer

# fields every trained editor's configs have: the CLI and the contract tests set them
TRAIN_FIELDS = ("steps", "seed", "validate")
CHECKPOINT_FIELD = "checkpoint"  # the editor config field that reads what the trainer wrote


def _fields(cls: type) -> set[str]:
    """The field names of a config dataclass."""
    return {f.name for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class EditorSpec:
    """One entry of the registry: how to build, configure and (for trained editors) train an editor."""

    name: str
    factory: Callable[..., Editor]  # called as factory(config, name=name)
    config_cls: type
    defaults: dict[str, Any]  # overrides of the config class's defaults for this entry
    description: str
    uses_sss: bool = False  # the loss has the SSS term by default (C > 0): the "+sss" entries
    c_field: str | None = None  # the config field holding C of L_all = (1-C)*L + C*SSS; None: no SSS term
    trainer: Trainer | None = None  # trained editors: writes the checkpoint config_cls.checkpoint reads
    train_config_cls: type | None = None  # the trainer's config (holds C in c_field too)
    # independent single edits the bench makes side by side by default (``--edit-batch`` overrides):
    # FTL_BATCH / MEND_BATCH / MEMIT_BATCH where that measured faster on one CPU thread, 1 where it did not
    # (docs/performance.md, "Edits side by side")
    edit_batch: int = 1

    @property
    def trainable(self) -> bool:
        """True for an editor that needs a checkpoint made by its trainer (MEND, SERAC)."""
        return self.trainer is not None

    @property
    def has_c(self) -> bool:
        """Whether C is a setting users pick for this entry: an SSS entry ("+sss") with a C field. The plain
        entries (ft-l, mend, serac) run at C = 0 and show no C; ROME and MEMIT have none."""
        return self.uses_sss and self.c_field is not None

    @property
    def c_role(self) -> str | None:
        """What C is for this editor, decided here only (see ``C_ROLES``): "loss" (FT-L: the edit's own
        loss weighs the SSS term by C), "checkpoint" (MEND, SERAC: C is the C their checkpoint was
        trained at; the edit itself has no SSS term), or None (ROME, MEMIT: no SSS term at all)."""
        if self.c_field is None:
            return None
        return "checkpoint" if self.trainable else "loss"

    def check(self) -> None:
        """ValueError naming what is wrong when the entry's parts do not fit together."""
        fields = _fields(self.config_cls)
        unknown = sorted(set(self.defaults) - fields)
        if unknown:
            raise ValueError(f"editor {self.name!r}: default {unknown[0]!r} is not a field of "
                             f"{self.config_cls.__name__}")
        if self.c_field is not None and self.c_field not in fields:
            raise ValueError(f"editor {self.name!r}: c_field {self.c_field!r} is not a field of "
                             f"{self.config_cls.__name__}")
        if (self.trainer is None) != (self.train_config_cls is None):
            raise ValueError(f"editor {self.name!r}: give both trainer and train_config_cls, or neither")
        if self.trainer is None:
            return
        train_fields = _fields(self.train_config_cls)
        needed = [*TRAIN_FIELDS, *([self.c_field] if self.c_field else [])]
        missing = [f for f in needed if f not in train_fields]
        if missing:
            raise ValueError(f"editor {self.name!r}: {self.train_config_cls.__name__} lacks the field "
                             f"{missing[0]!r} (a train config has {', '.join(needed)})")
        if CHECKPOINT_FIELD not in fields:
            raise ValueError(f"editor {self.name!r}: a trained editor's {self.config_cls.__name__} needs a "
                             f"{CHECKPOINT_FIELD!r} field (the folder its trainer wrote)")


EDITORS: dict[str, EditorSpec] = {}

# What C means for an editor, in words for every screen and file (keys: ``EditorSpec.c_role``).
C_ROLES = {"loss": "weight of the SSS term in this edit's loss, L_all = (1 - C) * L + C * SSS (paper Eq. 10)",
           "checkpoint": "C the editor's checkpoint was trained with; the edit itself has no SSS term"}


def register_editor(spec: EditorSpec) -> EditorSpec:
    """Add ``spec`` to EDITORS under ``spec.name``; returns it.

    Raises ValueError when the name is taken (pick another name; the registered entries are the
    keys of EDITORS) or when the entry's parts do not fit together (``EditorSpec.check``).
    """
    if spec.name in EDITORS:
        raise ValueError(f"an editor named {spec.name!r} is already registered "
                         f"({EDITORS[spec.name].description}); register yours under another name")
    spec.check()
    EDITORS[spec.name] = spec
    return spec


# side-by-side batches by measurement (benchmarks/bench_edit_batch.py, one CPU thread, quiet machine; results/s
# against one at a time): FT-L 1.42x at 5, 1.59x at 25 (FT-L+SSS 1.41x / 1.57x); MEND, scored together,
# 1.20x at 5, 1.25x at 25; ROME 1.08x at 5, within the noise of a busy machine: left at 1. MEMIT, its deltas and
# layers made side by side (MEMIT.edit_each): 1.73x at 5, 2.10x at 25 (interleaved, load average 3)
FTL_BATCH = 25
MEND_BATCH = 5
MEMIT_BATCH = 25

_BUILT_IN = (
    EditorSpec("ft-l", FTL, FTLConfig, {}, "constrained fine-tuning of one MLP output projection", c_field="sss_c",
               edit_batch=FTL_BATCH),
    EditorSpec("ft-l+sss", FTL, FTLConfig, {"sss_c": 0.9}, "FT-L with the SSS loss term", uses_sss=True,
               c_field="sss_c", edit_batch=FTL_BATCH),
    EditorSpec("ft-l+sss-loose-sum", FTL, FTLConfig, {"sss_c": 0.9, "norm_constraint": 5e-2, "sss_reduction": "sum"},
               "FT-L+SSS where SSS changes FT-L's edits most (box +-5e-2, SSS summed over tokens; docs/editors.md)",
               uses_sss=True, c_field="sss_c", edit_batch=FTL_BATCH),
    EditorSpec("mend", MEND, MENDConfig, {}, "meta-trained gradient transform (MEND)", c_field="sss_c",
               trainer=train_mend, train_config_cls=MENDTrainConfig, edit_batch=MEND_BATCH),
    EditorSpec("mend+sss", MEND, MENDConfig, {"sss_c": 0.9}, "MEND meta-trained with the SSS term", uses_sss=True,
               c_field="sss_c", trainer=train_mend, train_config_cls=MENDTrainConfig, edit_batch=MEND_BATCH),
    EditorSpec("serac", SERAC, SERACConfig, {}, "edit memory, scope classifier, counterfactual model",
               c_field="sss_c", trainer=train_serac, train_config_cls=SERACTrainConfig),
    EditorSpec("serac+sss", SERAC, SERACConfig, {"sss_c": 0.9},
               "SERAC with the counterfactual model trained with the SSS term", uses_sss=True, c_field="sss_c",
               trainer=train_serac, train_config_cls=SERACTrainConfig),
    EditorSpec("rome", ROME, ROMEConfig, {}, "rank-one update of one MLP output projection (ROME)"),
    EditorSpec("memit", MEMIT, MEMITConfig, {}, "least-squares update over several MLP layers (MEMIT)",
               edit_batch=MEMIT_BATCH),
)
for _entry in _BUILT_IN:
    register_editor(_entry)


def _spec(name: str) -> EditorSpec:
    """The entry ``name``; RequestError listing the names when there is none."""
    if name not in EDITORS:
        raise RequestError(f"unknown editor {name!r}; choose one of: {', '.join(EDITORS)}")
    return EDITORS[name]


def _fits(value: Any, kind: Any) -> bool:
    """Whether ``value`` is a value of the annotation ``kind`` (int, float, bool, str, None, Literal,
    unions, ``tuple[X, ...]``). An int is a float; a bool is neither; a single number fits a tuple of
    numbers (the editors read ``layers=5`` as one layer)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is tuple:
        items = value if isinstance(value, (tuple, list)) else (value,)
        return all(_fits(v, args[0]) for v in items)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return not isinstance(kind, type) or isinstance(value, kind)


def _build(cls: type, defaults: dict[str, Any], overrides: dict[str, Any], what: str):
    """``cls(**defaults, **overrides)``; RequestError naming ``what`` for an override ``cls`` lacks
    or a value of the wrong type (``--set steps=abc``: the message gives the type expected)."""
    fields = _fields(cls)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise RequestError(f"{what} has no setting {unknown[0]!r}; settings: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    for key, value in overrides.items():
        if not _fits(value, hints[key]):
            kind = hints[key]
            expected = (f"one of {', '.join(map(repr, typing.get_args(kind)))}" if typing.get_origin(kind) is typing.Literal
                        else getattr(kind, "__name__", None) or str(kind).replace("typing.", ""))
            raise RequestError(f"{what}: setting {key!r} must be {expected}, got {value!r}")
    return cls(**{**{k: v for k, v in defaults.items() if k in fields}, **overrides})


def editor_config(name: str, **overrides: Any):
    """The config an editor named ``name`` would run with, given ``overrides``.

    For a trained editor (``c_role`` "checkpoint") the C field is the C its checkpoint was trained
    with. RequestError for an unknown name, a setting the config does not have, or a trained
    editor asked for a C none of its checkpoints has (the message names them and the train command).
    """
    spec = _spec(name)
    config = _build(spec.config_cls, spec.defaults, overrides, f"editor {name!r}")
    return _checked_c(name, config, overrides)


def train_config(name: str, **overrides: Any):
    """The train config of the trained editor ``name``, given ``overrides``.

    The entry's C (e.g. 0.9 for "mend+sss") is the default of its C field. RequestError for an
    unknown name, an editor that is not trained, or a setting the train config does not have.
    """
    spec = _spec(name)
    if not spec.trainable:
        raise RequestError(f"editor {name!r} is not trained; trained editors: {', '.join(trainable_editors())}")
    defaults = {spec.c_field: spec.defaults[spec.c_field]} if spec.c_field in spec.defaults else {}
    return _build(spec.train_config_cls, defaults, overrides, f"{name} training")


def checkpoint_c(folder: str | Path) -> float | None:
    """The C a trained editor's checkpoint in ``folder`` was trained with (its config.json's ``train.sss_c``).

    None when ``folder`` holds no readable checkpoint config (the editor's loader says why when it runs).
    """
    path = Path(folder) / "config.json"
    try:
        return float(json.loads(path.read_text())["train"]["sss_c"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shipped_checkpoints(name: str) -> dict[float, Path]:
    """C -> folder of the shipped checkpoints the trained editor ``name`` can load ({} for other editors)."""
    spec = _spec(name)
    if spec.c_role != "checkpoint":
        return {}
    out: dict[float, Path] = {}
    for c in (0.0, 1.0):  # the config picks the C = 0 checkpoint or the SSS one (sss_c > 0)
        folder = spec.config_cls(**{spec.c_field: c}).folder()
        trained = checkpoint_c(folder)
        if trained is not None:
            out[trained] = folder
    return dict(sorted(out.items()))


def _checked_c(name: str, config, overrides: dict[str, Any]):
    """``config`` with C made honest: for a trained editor, C is the C its checkpoint was trained with.

    Asked for another C (``overrides`` sets the C field), RequestError naming the checkpoints there
    are and the ``train`` command that makes one; not asked, the config takes the checkpoint's C.
    """
    spec = EDITORS[name]
    if spec.c_role != "checkpoint":
        return config
    config.validate()  # C in [0, 1] and the other bounds first: their messages are the precise ones
    folder = config.folder()
    trained = checkpoint_c(folder)
    if trained is None:
        return config  # no checkpoint there: the editor's loader raises a clear CheckpointError
    asked = overrides.get(spec.c_field)
    if asked is not None and abs(float(asked) - trained) > 1e-9:
        have = ", ".join(f"C = {c:g} ({_shown(f)})" for c, f in shipped_checkpoints(name).items())
        kind = name.split("+")[0]
        raise RequestError(
            f"{name} has no checkpoint trained at C = {float(asked):g}: {_shown(folder)} was trained at C = "
            f"{trained:g}; shipped: {have or 'none'}. Train one with: sss-lab train {kind} --sss-c {float(asked):g} "
            f"--data world --out DIR, then pass checkpoint=DIR (--set checkpoint=DIR)")
    return dataclasses.replace(config, **{spec.c_field: trained})


def _shown(folder: Path) -> str:
    """A checkpoint folder as shown in messages: its place in the package for a shipped one."""
    folder = Path(folder)
    return f"sss_core/assets/editors/{folder.name}" if folder.parent == ASSETS else str(folder)


def trainable_editors() -> list[str]:
    """Names of the registered editors that have a trainer."""
    return [name for name, spec in EDITORS.items() if spec.trainable]


def make_editor(name: str, **overrides: Any) -> Editor:
    """Build the editor ``name`` (a key of EDITORS) with config ``overrides``; RequestError as ``editor_config``."""
    config = editor_config(name, **overrides)  # raises a clear error for an unknown name
    return EDITORS[name].factory(config, name=name)


KEPT_PER_MODEL = 32  # editors kept per model (least recently used dropped first): names x settings a session tries
_KEPT: WeakKeyDictionary = WeakKeyDictionary()  # model -> {settings key: Editor}, in order of last use
_KEPT_LOCK = threading.Lock()


def kept_editor(model: Any, name: str, settings: Mapping[str, Any]) -> Editor:
    """The editor ``name`` with config ``settings`` for ``model``: built on first use, then kept.

    Built once per model and settings, an editor keeps what it loads or factorises for that model
    (MEND's and SERAC's checkpoints, ROME's and MEMIT's factorised key statistics, ROME's context
    prefixes) across runs. Editors keep nothing of an edit once it is reverted (SERAC's memory
    entries leave with their edit), so a kept editor's edits equal a fresh one's
    (tests/test_kept_editors.py). Use it under the model's lock (``locks.model_lock``), as
    ``analysis.run_record`` does: an editor kept for a model is never used by two threads at once.
    Kept while the model lives (weakly keyed), at most ``KEPT_PER_MODEL`` per model.
    Raises RequestError as ``make_editor``.
    """
    key = name + "\0" + json.dumps(dict(settings), sort_keys=True, default=repr)
    with _KEPT_LOCK:
        kept = _KEPT.setdefault(model, {})
        editor = kept.pop(key, None)
    if editor is None:
        editor = make_editor(name, **settings)
    with _KEPT_LOCK:
        kept[key] = editor  # most recently used last
        while len(kept) > KEPT_PER_MODEL:
            kept.pop(next(iter(kept)))
    return editor


__all__ = ["C_ROLES", "EDITORS", "Edit", "checkpoint_c", "shipped_checkpoints", "EditBase", "Editor", "EditorSpec", "WeightEdit", "editor_config", "kept_editor",
           "make_editor", "register_editor", "train_config", "trainable_editors"]
