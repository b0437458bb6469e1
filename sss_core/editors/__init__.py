"""Every editor, listed once. ``make_editor(name, **overrides)`` builds one by name.

Example:
    >>> editor = make_editor("ft-l+sss", sss_c=0.5, steps=40)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import RequestError
from .base import Edit, Editor, WeightEdit
from .ftl import FTL, FTLConfig
from .mend import MEND, MENDConfig
from .memit import MEMIT, MEMITConfig
from .rome import ROME, ROMEConfig
from .serac import SERAC, SERACConfig


@dataclass(frozen=True)
class EditorSpec:
    name: str
    factory: Callable[..., Editor]  # called as factory(config, name=name)
    config_cls: type
    defaults: dict[str, Any]  # overrides of the config class's defaults for this entry
    description: str
    uses_sss: bool = False  # the loss has the SSS term by default (C > 0): the "+sss" entries
    c_field: str | None = None  # the config field holding C of L_all = (1-C)*L + C*SSS; None: no SSS term


EDITORS: dict[str, EditorSpec] = {
    "ft-l": EditorSpec("ft-l", FTL, FTLConfig, {}, "constrained fine-tuning of one MLP output projection",
                           c_field="sss_c"),
    "ft-l+sss": EditorSpec("ft-l+sss", FTL, FTLConfig, {"sss_c": 0.9}, "FT-L with the SSS loss term",
                           uses_sss=True, c_field="sss_c"),
    "mend": EditorSpec("mend", MEND, MENDConfig, {}, "meta-trained gradient transform (MEND)", c_field="sss_c"),
    "mend+sss": EditorSpec("mend+sss", MEND, MENDConfig, {"sss_c": 0.9}, "MEND meta-trained with the SSS term",
                           uses_sss=True, c_field="sss_c"),
    "serac": EditorSpec("serac", SERAC, SERACConfig, {}, "edit memory, scope classifier, counterfactual model",
                       c_field="sss_c"),
    "serac+sss": EditorSpec("serac+sss", SERAC, SERACConfig, {"sss_c": 0.9},
                            "SERAC with the counterfactual model trained with the SSS term", uses_sss=True,
                            c_field="sss_c"),
    "rome": EditorSpec("rome", ROME, ROMEConfig, {}, "rank-one update of one MLP output projection (ROME)"),
    "memit": EditorSpec("memit", MEMIT, MEMITConfig, {}, "least-squares update over several MLP layers (MEMIT)"),
}


def editor_config(name: str, **overrides: Any):
    """The config an editor named ``name`` would run with, given ``overrides``."""
    if name not in EDITORS:
        raise RequestError(f"unknown editor {name!r}; choose one of: {', '.join(EDITORS)}")
    spec = EDITORS[name]
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise RequestError(f"editor {name!r} has no setting {unknown[0]!r}; settings: {', '.join(sorted(fields))}")
    return spec.config_cls(**{**spec.defaults, **overrides})


def make_editor(name: str, **overrides: Any) -> Editor:
    """Build the editor ``name`` (a key of EDITORS) with config ``overrides``."""
    config = editor_config(name, **overrides)  # raises a clear error for an unknown name
    return EDITORS[name].factory(config, name=name)


__all__ = ["EDITORS", "Edit", "Editor", "EditorSpec", "WeightEdit", "editor_config", "make_editor"]
