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


@dataclass(frozen=True)
class EditorSpec:
    name: str
    factory: Callable[..., Editor]  # called as factory(config, name=name)
    config_cls: type
    defaults: dict[str, Any]  # overrides of the config class's defaults for this entry
    description: str
    uses_sss: bool = False


EDITORS: dict[str, EditorSpec] = {
    "ft-l": EditorSpec("ft-l", FTL, FTLConfig, {}, "constrained fine-tuning of one MLP output projection"),
    "ft-l+sss": EditorSpec("ft-l+sss", FTL, FTLConfig, {"sss_c": 0.9}, "FT-L with the SSS loss term",
                           uses_sss=True),
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
    return EDITORS[name].factory(editor_config(name, **overrides), name=name)


__all__ = ["EDITORS", "Edit", "Editor", "EditorSpec", "WeightEdit", "editor_config", "make_editor"]
