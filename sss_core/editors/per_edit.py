"""Independent edits side by side in one forward pass: each batch row reads its own edit's weights.

Single edits are independent: each starts from the unedited model and is reverted. To run B of them
at once (issue 27), the few parameters the editor changes are given B values, one per edit, and the
modules holding them compute each batch row with the values of the edit the row belongs to; every
other module runs on the whole batch as usual. Rows examples never interact in a causal LM, so each
row's output equals what the model gives with that edit applied alone (within float tolerance: the
batch's padding and matrix shapes differ).

Supported parameters: the ``weight`` and ``bias`` of ``nn.Linear`` and of GPT-2's ``Conv1D`` (the
MLP projections FT-L, ROME, MEMIT and MEND edit). ``RowWeights.supports`` tells a caller whether
an edit can be read this way; callers fall back to applying the edits one at a time otherwise.

Example:
    >>> rows = RowWeights(model, {"transformer.h.0.mlp.c_proj.weight": [w_a, w_b]})
    >>> with rows:
    ...     rows.edit_of_row = torch.tensor([0, 0, 1])   # rows 0-1 read w_a, row 2 reads w_b
    ...     logits = model(input_ids=ids3).logits
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import RequestError

_LOCAL = ("weight", "bias")


@functools.cache
def _conv1d() -> type[nn.Module]:
    """GPT-2's ``Conv1D`` class, imported on first use: importing transformers here would put about half a
    second on the app's first page, which does not edit."""
    from transformers.pytorch_utils import Conv1D
    return Conv1D


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding parameter ``name`` and the parameter's local name (``weight``/``bias``)."""
    module_name, _, local = name.rpartition(".")
    return model.get_submodule(module_name), local


def supports(model: nn.Module, names: Sequence[str]) -> bool:
    """Whether every named parameter is a ``weight`` or ``bias`` of a Linear or Conv1D module."""
    try:
        return all(local in _LOCAL and isinstance(mod, (nn.Linear, _conv1d()))
                   for mod, local in (_owner(model, n) for n in names))
    except AttributeError:  # a name the model does not have
        return False


def _project(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``module``'s map of ``x`` (rows, tokens, d_in) with the given weight and bias."""
    if isinstance(module, _conv1d()):  # weight (d_in, d_out)
        out = x.reshape(-1, x.shape[-1]) @ weight
        out = out + bias if bias is not None else out
        return out.view(*x.shape[:-1], weight.shape[-1])
    return F.linear(x, weight, bias)  # nn.Linear: weight (d_out, d_in)


class RowWeights:
    """A context in which chosen modules compute each batch row with its own edit's parameter values.

    ``values``: parameter name -> one tensor per edit, each shaped like the parameter (a list, or a
    tensor stacked on dim 0: (B, *shape)); values may require grad (FT-L trains through them).
    Inside the context, set ``edit_of_row`` before each forward: a (rows,) long tensor or list with
    the edit index (0..B-1) each batch row reads. Leaving the context restores every module's own
    ``forward``; the model's parameters are never written.

    Raises RequestError on entry when a parameter is not a Linear/Conv1D weight or bias
    (``supports``), or when a value's shape differs from its parameter's.
    """

    def __init__(self, model: nn.Module, values: Mapping[str, Sequence[torch.Tensor] | torch.Tensor]):
        """See the class docstring; nothing is patched until the context is entered."""
        if not supports(model, list(values)):
            raise RequestError("side-by-side edits need Linear or Conv1D weights and biases; "
                               f"got {', '.join(values)}")
        self.model = model
        self.values = dict(values)
        self.edit_of_row: torch.Tensor | Sequence[int] | None = None
        self._patched: list[nn.Module] = []

    def _per_module(self) -> dict[nn.Module, dict[str, Sequence[torch.Tensor]]]:
        """module -> {local name: values}, checking each value's shape against its parameter."""
        grouped: dict[nn.Module, dict[str, Sequence[torch.Tensor]]] = {}
        for name, vals in self.values.items():
            module, local = _owner(self.model, name)
            shape = getattr(module, local).shape
            if any(v.shape != shape for v in vals):
                raise RequestError(f"{name}: each edit's value must have the parameter's shape {tuple(shape)}")
            grouped.setdefault(module, {})[local] = vals
        return grouped

    def _segments(self, rows: int) -> list[tuple[int, int, int]]:
        """(edit, first row, end row) runs of ``edit_of_row``; RequestError when it does not fit ``rows``."""
        if self.edit_of_row is None:
            raise RequestError("set edit_of_row (the edit index of each batch row) before the forward pass")
        index = torch.as_tensor(self.edit_of_row, dtype=torch.long).cpu()
        if index.numel() != rows:
            raise RequestError(f"edit_of_row names {index.numel()} rows but the batch has {rows}")
        edits, counts = torch.unique_consecutive(index, return_counts=True)
        ends = counts.cumsum(0).tolist()
        return [(e, end - n, end) for e, n, end in zip(edits.tolist(), counts.tolist(), ends)]

    def _forward_for(self, module: nn.Module, own: dict[str, Sequence[torch.Tensor]]):
        """The replacement ``forward`` of ``module``: each run of rows with its edit's values."""
        def forward(x: torch.Tensor) -> torch.Tensor:
            parts = []
            for edit, start, end in self._segments(x.shape[0]):
                weight = own["weight"][edit] if "weight" in own else module.weight
                bias = own["bias"][edit] if "bias" in own else module.bias
                parts.append(_project(module, x[start:end], weight.to(x.dtype),
                                      None if bias is None else bias.to(x.dtype)))
            return torch.cat(parts)
        return forward

    def __enter__(self) -> "RowWeights":
        """Patch the modules (instance attribute ``forward``); RequestError for a bad shape."""
        for module, own in self._per_module().items():
            module.forward = self._forward_for(module, own)
            self._patched.append(module)
        return self

    def __exit__(self, *exc) -> None:
        """Give every patched module its own ``forward`` back."""
        for module in self._patched:
            del module.forward
        self._patched = []
