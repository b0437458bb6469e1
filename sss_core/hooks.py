"""Forward hooks as context managers: every hook is removed in ``finally``.

Example:
    >>> with trace(model, ["transformer.h.3.mlp.c_proj"]) as rec:
    ...     model(**enc)
    >>> rec["transformer.h.3.mlp.c_proj"].input   # (batch, tokens, d_ff)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn


@dataclass
class Record:
    input: torch.Tensor | None = None  # the module's first positional input
    output: torch.Tensor | None = None


@contextmanager
def trace(model: nn.Module, names: list[str], detach: bool = True) -> Iterator[dict[str, Record]]:
    """Record the input and output of the named submodules during forward passes."""
    records = {name: Record() for name in names}
    handles = []

    def make(name: str):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            inp = args[0] if args else None
            records[name].input = inp.detach() if detach and inp is not None else inp
            records[name].output = out.detach() if detach else out
        return hook

    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_hook(make(name)))
        yield records
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patch_output(model: nn.Module, name: str,
                 fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the output of submodule ``name`` by ``fn(output)`` during forward passes."""
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
