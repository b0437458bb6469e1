"""The editor contract: ``editor.edit(model, tok, requests)`` returns an Edit to apply and revert.

Example:
    >>> editor = make_editor("ft-l+sss", sss_c=0.9)
    >>> with editor.edit(model, tok, [request]) as edited:   # weights changed inside
    ...     edited.model(**enc)
    >>> # every parameter is bit-identical to before here
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from typing import Iterator, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from ..errors import EditFailed
from ..types import EditRequest


@runtime_checkable
class Edit(Protocol):
    """A change to a model that can be applied and reverted exactly."""

    @property
    def model(self) -> nn.Module:
        """What to call for predictions while the edit is applied (logits, hidden_states)."""

    def apply(self) -> None: ...

    def revert(self) -> None: ...

    def __enter__(self) -> "Edit": ...

    def __exit__(self, *exc) -> None: ...


class Editor(Protocol):
    name: str

    def edit(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> Edit: ...


class WeightEdit:
    """New values for some parameters, computed against ``base`` values.

    ``apply`` saves the current values and writes the new ones; ``revert`` writes the saved values
    back, so reverting is bit-exact even after other edits were stacked on top and reverted.
    """

    def __init__(self, model: nn.Module, new: dict[str, torch.Tensor],
                 base: dict[str, torch.Tensor], info: dict | None = None):
        self._model = model
        self.new = new  # parameter name -> tensor (same shape, dtype, device)
        self.base = base  # the values the edit was computed from
        self.info = info or {}
        self._saved: dict[str, torch.Tensor] | None = None

    @property
    def model(self) -> nn.Module:
        return self._model

    @property
    def applied(self) -> bool:
        return self._saved is not None

    def apply(self) -> None:
        if self.applied:
            raise RuntimeError("this edit is already applied")
        params = dict(self._model.named_parameters())
        self._saved = {n: params[n].detach().clone() for n in self.new}
        with torch.no_grad():
            for n, value in self.new.items():
                params[n].copy_(value)

    def revert(self) -> None:
        if not self.applied:
            return
        params = dict(self._model.named_parameters())
        with torch.no_grad():
            for n, value in self._saved.items():
                params[n].copy_(value)
        self._saved = None

    def delta_norms(self) -> dict[str, float]:
        """Frobenius norm of (new - base) per edited parameter."""
        return {n: (self.new[n].float() - self.base[n].float()).norm().item() for n in self.new}

    def __enter__(self) -> "WeightEdit":
        self.apply()
        return self

    def __exit__(self, *exc) -> None:
        self.revert()


@contextmanager
def trainable(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, nn.Parameter]]:
    """Make the named parameters trainable for an editor's optimisation, then restore them.

    Whatever happens inside (an exception, a NaN), the parameters get their original values and
    ``requires_grad`` flags back on exit. The caller reads the trained values inside the block.
    """
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"no parameter named {missing[0]!r} in the model")
    saved = {n: params[n].detach().clone() for n in names}
    flags = {n: params[n].requires_grad for n in names}
    try:
        for n in names:
            params[n].requires_grad_(True)
        yield {n: params[n] for n in names}
    finally:
        with torch.no_grad():
            for n in names:
                params[n].copy_(saved[n])
                params[n].requires_grad_(flags[n])


def check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise EditFailed(f"the loss became {loss.item()} at step {step}; the edit was abandoned and "
                         "the model restored. Lower the learning rate or C")


# One lock per model object: editors that modify weights while they optimise hold it, so two
# threads editing the same shared model never see each other's half-trained weights. A weak
# dictionary, so the lock goes away with the model.
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises weight changes on ``model``."""
    with _LOCKS_GUARD:
        if model not in _LOCKS:
            _LOCKS[model] = threading.RLock()
        return _LOCKS[model]
