"""One lock per model object, for everything that changes or reads a shared model's weights.

Editors that modify weights while they optimise hold it, and every read of a model's predictions,
embeddings or gradients (``reads_model``) takes it, so a thread never reads a model another
thread holds edited, and two threads editing the same shared model never see each other's
half-trained weights. The lock is re-entrant: a thread that holds it (e.g. the pipeline, with its
own edit applied) reads its own edited model freely. A model that routes through another one (a
SERAC edit memory over its base model) shares its base model's lock (``LOCK_OWNER``).

Example:
    >>> with model_lock(lm.model):
    ...     edit.apply(); ...; edit.revert()
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Callable, TypeVar

from torch import nn

LOCK_OWNER = "lock_owner"  # attribute of a model whose weights are another model's: that model's lock is used
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # the lock goes away with the model
_LOCKS_GUARD = threading.Lock()
F = TypeVar("F", bound=Callable)


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises weight changes and reads on ``model`` (or on its lock owner)."""
    while getattr(model, LOCK_OWNER, None) is not None:
        model = getattr(model, LOCK_OWNER)
    with _LOCKS_GUARD:
        if model not in _LOCKS:
            _LOCKS[model] = threading.RLock()
        return _LOCKS[model]


def reads_model(fn: F) -> F:
    """Decorator: ``fn(model, ...)`` runs holding ``model_lock(model)`` (its first argument's lock)."""
    @functools.wraps(fn)
    def locked(model, *args, **kwargs):
        with model_lock(model):
            return fn(model, *args, **kwargs)
    return locked  # type: ignore[return-value]
