"""The editor contract: ``editor.edit(model, tok, requests)`` returns an Edit to apply and revert.

Example:
    >>> editor = make_editor("ft-l+sss", sss_c=0.9)
    >>> with editor.edit(model, tok, [request]) as edited:   # weights changed inside
    ...     edited.model(**enc)
    >>> # every parameter is bit-identical to before here
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from ..errors import EditFailed
from ..locks import model_lock  # one lock per model (sss_core/locks.py); editors and callers import it here
from ..types import EditRequest


@runtime_checkable
class Edit(Protocol):
    """A change to a model that can be applied and reverted exactly.

    What callers read: ``model`` (what to call while applied), ``info`` (what the editor reports
    about the edit), ``delta_norms()`` (how much each parameter moves) and ``applied``. Editors
    build their edits on ``EditBase``, which provides all of it.
    """

    info: dict  # what the editor reports: steps, layer / layers, loss history, ...; {} when nothing

    @property
    def model(self) -> nn.Module:
        """What to call for predictions while the edit is applied (logits, hidden_states)."""

    @property
    def applied(self) -> bool:
        """Whether the edit is applied now."""

    def apply(self) -> None:
        """Make the change; RuntimeError if it is already applied."""

    def revert(self) -> None:
        """Undo the change exactly; nothing happens when it is not applied."""

    def delta_norms(self) -> dict[str, float]:
        """Frobenius norm of the change per edited parameter; {} when no parameter changes."""

    def __enter__(self) -> "Edit":
        """Apply the edit; return it."""

    def __exit__(self, *exc) -> None:
        """Revert the edit, whatever happened inside the block."""


@runtime_checkable
class Editor(Protocol):
    """Computes edits: ``editor.edit(model, tok, requests)`` returns an ``Edit``, not yet applied."""

    name: str  # the registry name it was built under (e.g. "ft-l+sss"); results are labelled with it

    def edit(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> Edit:
        """The edit making ``model`` answer each request's target; the model is left unchanged.

        Raises RequestError for a request that cannot be edited (empty prompt or target, subject
        not in the prompt), EditFailed when the optimisation diverges.
        """


class EditBase:
    """The apply / revert bookkeeping every edit shares; a subclass writes ``_apply`` and ``_revert``.

    ``apply`` refuses to apply twice, ``revert`` does nothing unless applied, and ``with edit:``
    applies on entry and reverts on exit, whatever happens inside. ``delta_norms`` is {} unless a
    subclass changes parameters.

    Example:
        >>> class NoteEdit(EditBase):                  # an edit that only keeps a note
        ...     def _apply(self): notes.append("x")
        ...     def _revert(self): notes.remove("x")
        >>> with NoteEdit(model, info={"steps": 0}) as edited:
        ...     edited.model(input_ids=ids)
    """

    def __init__(self, model: nn.Module, info: dict | None = None):
        """``model``: what ``edit.model`` returns; ``info``: what the editor reports ({} by default)."""
        self._model = model
        self.info = info or {}
        self._applied = False

    @property
    def model(self) -> nn.Module:
        """What to call for predictions while the edit is applied."""
        return self._model

    @property
    def applied(self) -> bool:
        """Whether the edit is applied now."""
        return self._applied

    def _apply(self) -> None:
        """Make the change. If it fails half-way it must undo what it did before raising."""
        raise NotImplementedError

    def _revert(self) -> None:
        """Undo the change made by ``_apply``."""
        raise NotImplementedError

    def apply(self) -> None:
        """Make the change. Raises RuntimeError if the edit is already applied."""
        if self._applied:
            raise RuntimeError("this edit is already applied")
        self._apply()
        self._applied = True

    def revert(self) -> None:
        """Undo the change exactly; nothing happens when the edit is not applied."""
        if not self._applied:
            return
        self._revert()
        self._applied = False

    def delta_norms(self) -> dict[str, float]:
        """Frobenius norm of the change per edited parameter: {} here (no parameter changes)."""
        return {}

    def __enter__(self) -> "EditBase":
        """Apply the edit (RuntimeError if already applied); return it."""
        self.apply()
        return self

    def __exit__(self, *exc) -> None:
        """Revert the edit, whatever happened inside the block."""
        self.revert()


class WeightEdit(EditBase):
    """New values for some parameters, computed against ``base`` values.

    ``apply`` saves the current values and writes the new ones; ``revert`` writes the saved values
    back, so reverting is bit-exact even after other edits were stacked on top and reverted.

    Example:
        >>> edit = WeightEdit(model, {"transformer.ln_f.bias": b + 1.0}, {"transformer.ln_f.bias": b})
        >>> with edit:
        ...     model(input_ids=ids)        # sees the new bias
        >>> edit.delta_norms()              # {"transformer.ln_f.bias": ||1||}
    """

    def __init__(self, model: nn.Module, new: dict[str, torch.Tensor],
                 base: dict[str, torch.Tensor], info: dict | None = None):
        """``new`` and ``base``: parameter name -> tensor shaped like that parameter (same dtype, device)."""
        super().__init__(model, info)
        self.new = new  # parameter name -> tensor (same shape, dtype, device)
        self.base = base  # the values the edit was computed from
        self._saved: dict[str, torch.Tensor] | None = None

    def _apply(self) -> None:
        """Save the current values, write the new ones; KeyError for a name the model lacks."""
        params = dict(self._model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.new}
        with torch.no_grad():
            try:
                for n, value in self.new.items():
                    params[n].copy_(value)
            except BaseException:  # a failed write leaves nothing half-written
                for n, value in saved.items():
                    params[n].copy_(value)
                raise
        self._saved = saved

    def _revert(self) -> None:
        """Write the values saved by ``_apply`` back."""
        params = dict(self._model.named_parameters())
        with torch.no_grad():
            for n, value in self._saved.items():
                params[n].copy_(value)
        self._saved = None

    def delta_norms(self) -> dict[str, float]:
        """Frobenius norm of (new - base) per edited parameter."""
        return {n: (self.new[n].float() - self.base[n].float()).norm().item() for n in self.new}


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
    """Raise EditFailed (the caller restores the model) when the loss at ``step`` is NaN or infinite."""
    if not torch.isfinite(loss):
        raise EditFailed(f"the loss became {loss.item()} at step {step}; the edit was abandoned and "
                         "the model restored. Lower the learning rate or C")
