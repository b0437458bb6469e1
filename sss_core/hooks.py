"""Forward hooks as context managers: record, edit or stop at named submodules; always removed.

``Trace`` hooks one submodule, ``TraceDict`` several at once. Inside the ``with`` block every
forward pass of the model records the hooked modules' first input and output (the first element
when the module returns a tuple), can replace that output, and can end the forward pass right
after a module has run (a ``StopForward`` raised by the hook, caught when the block exits). The
hooks are removed when the block exits, however it exits; only the handles created here are
removed, never hooks that the model or a library registered (transformers 5 registers its own).

Examples:
    >>> # record: the keys entering block 3's MLP output projection
    >>> with Trace(model, "transformer.h.3.mlp.c_proj") as t:
    ...     model(**enc)
    >>> t.input.shape                       # (batch, tokens, d_ff)
    >>> # several modules in one pass, stopping after the last (deeper blocks never run)
    >>> names = ["transformer.h.1.mlp.c_proj", "transformer.h.3.mlp.c_proj"]
    >>> with TraceDict(model, names, stop=True) as rec:
    ...     model(**enc)
    >>> rec[names[0]].input, rec[names[1]].output
    >>> # edit: add a vector to a module's output during the block's forward passes
    >>> with Trace(model, "transformer.h.3.mlp", edit_output=lambda out, inp: out + v):
    ...     logits = model(**enc).logits
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

# (output, input) -> new output. output: the module's output (its first element for a tuple),
# input: the module's first input (None when it was called without one); same shapes as the
# module's, e.g. (batch, tokens, d_out) and (batch, tokens, d_in) for a linear layer.
OutputEdit = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class StopForward(Exception):
    """Raised by a ``Trace`` hook with ``stop=True`` once its module has run; the trace catches it.

    ``source`` is the trace that raised it: an enclosing trace with ``stop=True`` on another
    module does not swallow an exception that is not its own.
    """

    def __init__(self, source: "Trace"):
        """``source``: the trace whose hook raised it."""
        super().__init__(f"forward stopped after {source.name}")
        self.source = source


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The module's first positional argument, else its ``hidden_states`` keyword argument (how
    transformers calls its blocks), else its first tensor keyword argument, else None."""
    if args:
        return args[0]
    if isinstance(kwargs.get("hidden_states"), torch.Tensor):
        return kwargs["hidden_states"]
    return next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)


class Trace:
    """Hook one submodule of ``model`` for the duration of a ``with`` block.

    Args:
        model: the model whose submodule is hooked.
        name: the submodule's name, as in ``model.named_modules()`` (e.g. ``"transformer.h.3.mlp.c_proj"``).
        retain_input: keep the module's first input of the latest call in ``self.input``.
        retain_output: keep its output of the latest call (after ``edit_output``) in ``self.output``.
        detach: keep detached tensors; ``False`` keeps them in the autograd graph, to take
            gradients with respect to them.
        edit_output: ``fn(output, input) -> new output``, applied at every call; the model
            continues with the new output (for a tuple output, its first element is replaced).
        stop: raise ``StopForward`` once the module has run, ending the forward pass; the
            ``with`` block then exits quietly, right after the call that ran the model.

    A module called several times in one forward pass keeps the values of its latest call.

    Raises:
        AttributeError: ``model`` has no submodule ``name`` (raised on entering the block).
        RuntimeError: the trace is entered while already active.
        TypeError: ``edit_output`` is given and the module returns neither a tensor nor a tuple.

    Example:
        >>> with Trace(model, "transformer.h.1.mlp.c_proj", stop=True) as t:
        ...     model(input_ids=ids)                          # stops after block 1's MLP
        >>> k = t.input                                       # (batch, tokens, d_ff)
    """

    def __init__(self, model: nn.Module, name: str, *, retain_input: bool = True, retain_output: bool = True,
                 detach: bool = True, edit_output: OutputEdit | None = None, stop: bool = False):
        """See the class docstring; nothing is hooked until the ``with`` block is entered."""
        self.model, self.name = model, name
        self.retain_input, self.retain_output, self.detach = retain_input, retain_output, detach
        self.edit_output, self.stop = edit_output, stop
        self.input: torch.Tensor | None = None  # first input of the latest call
        self.output: torch.Tensor | None = None  # output of the latest call (first element of a tuple)
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _keep(self, x: Any) -> Any:
        """``x`` as it is recorded: detached when ``detach`` is set."""
        return x.detach() if self.detach and isinstance(x, torch.Tensor) else x

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        """The forward hook: edit, record, then stop if asked. Returns the (new) output or None."""
        inp = _first_input(args, kwargs)
        first = output[0] if isinstance(output, tuple) else output
        result = None  # None: the module's output stays as it is
        if self.edit_output is not None:
            if not isinstance(first, torch.Tensor):
                raise TypeError(f"{self.name} returns {type(output).__name__}; only a tensor or a tuple "
                                "starting with one can be edited")
            first = self.edit_output(first, inp)
            result = (first, *output[1:]) if isinstance(output, tuple) else first
        if self.retain_input:
            self.input = self._keep(inp)
        if self.retain_output:
            self.output = self._keep(first)
        if self.stop:
            raise StopForward(self)
        return result

    def __enter__(self) -> "Trace":
        """Register the hook on the module; AttributeError if there is no such module."""
        if self._handle is not None:
            raise RuntimeError(f"the trace of {self.name} is already active; make a new Trace")
        module = self.model.get_submodule(self.name)  # AttributeError names the missing part
        self._handle = module.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def close(self) -> None:
        """Remove this trace's hook (the handle it created, nothing else); safe to call twice."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Remove the hook; swallow this trace's own StopForward, let every other exception through."""
        self.close()
        return isinstance(exc, StopForward) and exc.source is self


class TraceDict(dict):
    """``Trace`` over several submodules at once: a dict ``name -> Trace`` inside a ``with`` block.

    Args:
        model: the model whose submodules are hooked.
        names: submodule names; a repeated name is hooked once.
        retain_input, retain_output, detach: as for ``Trace``, for every module.
        edit_output: ``{name: fn(output, input) -> new output}`` for the modules whose output is
            replaced; the others are only recorded.
        stop: end the forward pass after the LAST name of ``names`` has run (list the deepest
            module last); the ``with`` block then exits quietly.

    Every hook is removed when the block exits, also when entering it fails half-way.

    Raises:
        AttributeError: a name is not a submodule of ``model`` (raised on entering the block).
        KeyError: ``edit_output`` names a module that is not in ``names``.

    Example:
        >>> names = [f"transformer.h.{i}.mlp.c_proj" for i in (1, 2)]
        >>> with TraceDict(model, names, retain_output=False, stop=True) as rec:
        ...     model(input_ids=ids)                            # block 3 onwards never runs
        >>> keys = {n: rec[n].input for n in names}             # (batch, tokens, d_ff) each
    """

    def __init__(self, model: nn.Module, names: Iterable[str], *, retain_input: bool = True,
                 retain_output: bool = True, detach: bool = True,
                 edit_output: Mapping[str, OutputEdit] | None = None, stop: bool = False):
        """See the class docstring; nothing is hooked until the ``with`` block is entered."""
        super().__init__()
        names = list(dict.fromkeys(names))  # unique, in order
        edits = dict(edit_output or {})
        unknown = sorted(set(edits) - set(names))
        if unknown:
            raise KeyError(f"edit_output names {unknown[0]!r}, which is not among the traced modules")
        for i, name in enumerate(names):
            self[name] = Trace(model, name, retain_input=retain_input, retain_output=retain_output,
                               detach=detach, edit_output=edits.get(name),
                               stop=stop and i == len(names) - 1)
        self._stack: ExitStack | None = None

    def __enter__(self) -> "TraceDict":
        """Register every hook; if one name fails, the hooks registered before it are removed."""
        with ExitStack() as stack:  # a failing name removes the hooks registered before it
            for t in self.values():
                stack.enter_context(t)
            self._stack = stack.pop_all()
        return self

    def close(self) -> None:
        """Remove every hook this TraceDict created; safe to call twice."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        for t in self.values():
            t.close()

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Remove every hook; swallow a StopForward raised by one of these traces only."""
        self.close()
        return isinstance(exc, StopForward) and any(exc.source is t for t in self.values())


@contextmanager
def trace(model: nn.Module, names: Iterable[str], detach: bool = True) -> Iterator[TraceDict]:
    """Record the first input and the output of the named submodules during forward passes.

    Shorthand for ``TraceDict(model, names, detach=detach)``.

    Example:
        >>> with trace(model, ["transformer.h.3.mlp.c_proj"]) as rec:
        ...     model(**enc)
        >>> rec["transformer.h.3.mlp.c_proj"].input   # (batch, tokens, d_ff)
    """
    with TraceDict(model, names, detach=detach) as rec:
        yield rec


@contextmanager
def patch_output(model: nn.Module, name: str,
                 fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the output of submodule ``name`` by ``fn(output)`` during forward passes.

    For a module returning a tuple, ``fn`` receives and replaces its first element. Nothing is
    recorded. Shorthand for ``Trace(model, name, edit_output=...)``.

    Example:
        >>> with patch_output(model, "transformer.h.1.mlp", lambda out: out + v):   # v: (d_model,)
        ...     logits = model(input_ids=ids).logits
    """
    with Trace(model, name, retain_input=False, retain_output=False, edit_output=lambda out, _inp: fn(out)):
        yield
