"""Editor settings that name a part of the model, checked against the model before any work.

A block index means the same in every editor: 0 is the first block, -1 the last (Python style),
and the editor reports the non-negative index it used. A value the model does not have raises
RequestError naming the setting and the valid range, which the CLI prints as one line (exit 2)
and the app as a message.

Example:
    >>> block_index(model, -1, "layer")              # 3 on a 4-block model
    >>> block_indices(model, (0, -1), "layers")      # (0, 3)
    >>> block_index(model, 5, "layer")               # RequestError: layer 5 does not exist ...
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import RequestError
from ..models import arch_spec


def _is_int(value: Any) -> bool:
    """True for an int that is not a bool (``True`` is no block index)."""
    return isinstance(value, int) and not isinstance(value, bool)


def index_in(value: Any, size: int, setting: str, what: str) -> int:
    """``value`` as an index into ``size`` items (negative counts from the end) -> 0..size-1.

    Raises:
        RequestError: ``value`` is not an integer, or outside -size..size-1.
    """
    if not _is_int(value):
        raise RequestError(f"{setting} must be a whole number naming one of the model's {what}, got {value!r}")
    if not -size <= value < size:
        raise RequestError(f"{setting}={value} does not exist: the model has {size} {what} "
                           f"(0..{size - 1}, or -{size}..-1 counting from the end)")
    return value % size


def as_index_tuple(value: Any, setting: str) -> tuple[int, ...]:
    """A setting that lists blocks, as a tuple: one integer is a list of one.

    Raises:
        RequestError: not an integer or a list of integers.
    """
    if _is_int(value):
        return (value,)
    if isinstance(value, (list, tuple)) and all(_is_int(v) for v in value):
        return tuple(value)
    raise RequestError(f"{setting} must be a block index or a list of them, e.g. {setting}=[0,1], got {value!r}")


def block_index(model: nn.Module, layer: Any, setting: str = "layer") -> int:
    """The non-negative index of transformer block ``layer`` of ``model`` (-1 = the last).

    Raises:
        RequestError: no such block (the message gives the range), or not an integer.
    """
    return index_in(layer, arch_spec(model).n_layers(model), setting, "blocks")


def block_indices(model: nn.Module, layers: Any, setting: str = "layers") -> tuple[int, ...]:
    """Non-negative indices of the blocks ``layers`` names (an integer or a list), in the given order.

    Raises:
        RequestError: an index the model does not have, a block named twice, none named, or not integers.
    """
    raw = as_index_tuple(layers, setting)
    if not raw:
        raise RequestError(f"{setting} names no block: give at least one, e.g. {setting}=[0]")
    out = tuple(block_index(model, layer, setting) for layer in raw)
    if len(set(out)) != len(out):
        raise RequestError(f"{setting}={list(raw)} names the same block twice (as {list(out)}): list each block once")
    return out


def hidden_state_indices(model: nn.Module, layers: Any, setting: str) -> tuple[int, ...]:
    """Non-negative indices into ``output_hidden_states`` (n_blocks + 1 entries: the embeddings
    first, then each block's output; -1 = the last block's).

    Raises:
        RequestError: an index outside the hidden states, or not integers.
    """
    size = arch_spec(model).n_layers(model) + 1
    return tuple(index_in(layer, size, setting, "hidden states (the embeddings, then one per block)")
                 for layer in as_index_tuple(layers, setting))
