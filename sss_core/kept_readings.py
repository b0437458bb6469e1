"""Readings of a model as it is, kept while its weights stay the same.

Several runs read the unedited model on the same inputs: a bench's editors and a C sweep's values score
the same groups of cases, and each score starts with the unedited model's predictions on the case's
probes and its lambda_max; the whole-world measures read every fact of the world. ``KeptReadings``
keeps such readings per model object (weakly: they go with the model) and checks each against
``weights_key``, so that a model whose weights changed since (an edit kept applied, sequential
editing, another dtype or device) is read again. A kept reading is the very object the first read
returned: the same bits as reading again with the same inputs and batches. A kept value must not
refer to the model (an object holding it would keep the model alive for as long as the process).

Example:
    >>> KEPT = KeptReadings(max_cost=10_000)
    >>> pre = KEPT.read(model, ("probes", tok, prompts, answers),
    ...                 lambda: teacher_forced(model, tok, prompts, answers), cost=len(prompts))
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch
from torch import nn

from .locks import LOCK_OWNER, model_lock

T = TypeVar("T")


def weights_key(model: nn.Module) -> tuple:
    """A cheap summary of the weights as they are: the float64 sum of each parameter, with the parameters'
    dtype and device and the model's training flag. Equal after an edit was reverted bit-exactly,
    different (almost surely) while any parameter is changed. One pass over the weights (about 1 ms for
    the shipped model on a CPU), one synchronisation per device the weights are on."""
    with model_lock(model), torch.no_grad():
        params = list(model.parameters())
        by_device: dict[torch.device, list[int]] = {}
        for i, p in enumerate(params):
            by_device.setdefault(p.device, []).append(i)
        sums: list[float] = [0.0] * len(params)
        for indices in by_device.values():
            for i, s in zip(indices, torch.stack([params[i].detach().sum(dtype=torch.float64)
                                                  for i in indices]).tolist()):
                sums[i] = s
        first = params[0] if params else None
        return (tuple(sums), model.training, None if first is None else (first.dtype, first.device))


def keepable(model: nn.Module) -> bool:
    """Whether a reading of ``model`` may be kept: not when the model answers from more than its parameters
    (a model that routes through another, such as SERAC's edit memory over its base model) or while a module's
    ``forward`` is replaced on the instance (side-by-side edits, ``editors.per_edit.RowWeights``; also
    accelerate's hooks on a model loaded with a device map, so such a model keeps nothing), which
    ``weights_key`` cannot see."""
    return (getattr(model, LOCK_OWNER, None) is None
            and not any("forward" in vars(m) for m in model.modules()))


class KeptReadings:
    """Readings of models kept per model object, under a caller's key, while the model's weights are the same.

    ``max_cost``: how much one model's kept readings may add up to, in the callers' own unit (probe
    rows, facts); the least recently used readings go first. Thread-safe; two threads that ask at once
    for a reading not yet kept may both make it.
    """

    def __init__(self, max_cost: int):
        """See the class docstring."""
        self.max_cost = max_cost
        self._per_model: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> OrderedDict
        self._guard = threading.Lock()

    def read(self, model: nn.Module, key: Hashable, reading: Callable[[], T], cost: int = 1) -> T:
        """The kept value of ``reading()`` for ``model`` under ``key``, made now if there is none for the
        model's current weights (``weights_key``). ``key`` must name every input of the reading other
        than the model: its texts, its batch size, the tokenizer itself (hashed and compared by
        identity). The model's lock is held to look and to keep, not while ``reading`` runs (it takes
        the lock itself, per batch if it likes, so a long reading does not stall other sessions' edits);
        a value whose model's weights changed while it was read is returned but not kept, and so is
        every reading of a model that is not ``keepable``. Raises what ``reading`` raises; nothing is kept
        then."""
        if not keepable(model):
            return reading()
        with model_lock(model):
            weights = weights_key(model)
            with self._guard:
                kept: OrderedDict[Any, tuple[int, Any]] = self._per_model.setdefault(model, OrderedDict())
                if (weights, key) in kept:
                    kept.move_to_end((weights, key))
                    return kept[(weights, key)][1]
        value = reading()
        with model_lock(model):
            if weights_key(model) != weights:
                return value
            with self._guard:
                kept[(weights, key)] = (cost, value)
                total = sum(c for c, _ in kept.values())
                while total > self.max_cost and len(kept) > 1:
                    total -= kept.popitem(last=False)[1][0]
        return value

    def clear(self) -> None:
        """Forget every kept reading (a benchmark that times reading from scratch)."""
        with self._guard:
            self._per_model.clear()
