"""SSS Lab's core: knowledge editing of language models and the SSS metric, with no user interface.

Everything a notebook needs comes from this one package; the submodules stay importable for the rest.

Example (a notebook; one edit of the shipped model, scored the way EasyEdit and the paper score it):

    from sss_core import EditRequest, analyse_edit, case_for_request, lambda_max, load_model, make_editor, run_edit

    lm = load_model()                          # the shipped GPT-2 of the built-in fact world; or a folder / hub name
    request = EditRequest("The capital of France is", "Rome", subject="France")
    lambda_max(lm.model, lm.tok, [request.prompt], [request.target_new])   # paper Eq. 9: tensor (1,)
    case = case_for_request(request)           # the request and the world's probes (paraphrases, neighbours, ...)
    result = run_edit(lm.model, lm.tok, make_editor("ft-l+sss", sss_c=0.9), case)   # edit, score, revert
    result.metrics["reliability"], result.lambda_max_after

    with make_editor("ft-l").edit(lm.model, lm.tok, [request]) as edited:
        ...                                    # the weights are edited inside the block, restored after it

    run = analyse_edit(lm, "rome", {}, case)   # what the app shows: probabilities, top-1, embeddings
    [(row.prompt, row.top1_before, row.top1_after) for row in run.rows]

What is here, by layer (each only uses the ones below it):

- case study: ``write_inspect_page`` (one edit as a standalone HTML page that opens offline).
- a run: ``make_record`` / ``RunRecord`` / ``load_record`` (everything that made a result: model,
  editor and its full config, C, the case with its probes, seed, analysis options) and ``run_record``
  (the one pipeline: edit as the record says, measure, revert).
- analysis: ``analyse_edit`` (one edit measured and reverted: probabilities, sparsity per sentence,
  weight deltas, the optimisation trajectory), ``delta_cosine`` / ``same_weight_edit`` /
  ``paired_probe_differences`` (two runs compared), ``sweep_c``, ``sequential_step``.
- evaluation: ``run_edit`` / ``evaluate_edit`` (EasyEdit's metrics), ``case_for_request``, ``presets``,
  ``load_dataset`` / ``load_cases`` (ZsRE, CounterFact, ROME, KnowEdit, the world).
- editors: ``EDITORS`` (the registry; ``EDITORS[name].c_field`` is the config field holding C),
  ``make_editor``, ``editor_config``.
- the SSS metric: ``lambda_max`` (Eq. 9; ``lambda_max_by_layer`` reads it at every hidden state) and ``sss_from_hidden``, the SSS loss term of
  ``L_all = (1 - C) * L + C * SSS`` (Eq. 10); ``embed_prompts`` and ``project`` for embeddings;
  sparsity per sentence: ``SentenceSparsity``, ``EditLambda``, ``KnnSettings``, ``knn_distances``.
- base: ``load_model`` / ``LoadedModel``, ``EditRequest`` / ``EditCase`` / ``EditResult``, and the errors a
  user can cause (all ``SSSError``; their messages say what to do).

``import sss_core`` itself is cheap: a name is imported from its submodule the first time it is used
(PEP 562), so ``python -m sss_core --help`` and ``from sss_core.types import EditRequest`` do not pay for
what they do not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# submodule -> the public names it gives this package, imported on first use by __getattr__;
# __all__ and the TYPE_CHECKING imports list the same names (tests/test_public_api.py checks it)
_EXPORTS: dict[str, tuple[str, ...]] = {
    ".analysis": ("EditRun", "EmbeddingSet", "ProbeRow", "SequentialStep", "SweepPoint", "analyse_edit",
                  "background_sentences", "c_field", "delta_cosine", "neighbour_table", "paired_probe_differences",
                  "run_record", "same_weight_edit", "sequential_baseline", "sequential_step", "sweep_c"),
    ".editors": ("EDITORS", "Edit", "EditBase", "Editor", "EditorSpec", "editor_config", "make_editor",
                  "register_editor", "train_config", "trainable_editors"),
    ".embeddings": ("embed_prompts",),
    ".errors": ("DataError", "EditFailed", "ModelLoadError", "RequestError", "SSSError"),
    ".evaluation.datasets": ("load_cases", "load_dataset"),
    ".evaluation.metrics": ("evaluate_edit", "run_edit"),
    ".evaluation.presets": ("case_for_request", "presets"),
    ".models": ("DEFAULT_MODEL", "LoadedModel", "load_model"),
    ".inspect_page": ("inspect_page", "write_inspect_page"),
    ".projection": ("project",),
    ".sparsity": ("EditLambda", "KnnSettings", "SentenceSparsity", "knn_distances"),
    ".record": ("AnalysisOptions", "RunRecord", "load_record", "make_record"),
    ".sss": ("lambda_max", "lambda_max_by_layer", "sss_from_hidden"),
    ".types": ("EditCase", "EditRequest", "EditResult", "Probe"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)  # the TYPE_CHECKING imports below list the same names (tests/test_public_api.py)

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from .analysis import (EditRun, EmbeddingSet, ProbeRow, SequentialStep, SweepPoint, analyse_edit,
                           background_sentences, c_field, delta_cosine, neighbour_table, paired_probe_differences,
                           run_record, same_weight_edit, sequential_baseline, sequential_step, sweep_c)
    from .editors import (EDITORS, Edit, EditBase, Editor, EditorSpec, editor_config, make_editor, register_editor,
                          train_config, trainable_editors)
    from .embeddings import embed_prompts
    from .errors import DataError, EditFailed, ModelLoadError, RequestError, SSSError
    from .evaluation.datasets import load_cases, load_dataset
    from .evaluation.metrics import evaluate_edit, run_edit
    from .evaluation.presets import case_for_request, presets
    from .models import DEFAULT_MODEL, LoadedModel, load_model
    from .inspect_page import inspect_page, write_inspect_page
    from .projection import project
    from .sparsity import EditLambda, KnnSettings, SentenceSparsity, knn_distances
    from .record import AnalysisOptions, RunRecord, load_record, make_record
    from .sss import lambda_max, lambda_max_by_layer, sss_from_hidden
    from .types import EditCase, EditRequest, EditResult, Probe


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its submodule on first use (PEP 562).

    Raises AttributeError for a name that is not public, as a missing attribute does.
    """
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list[str]:
    """The public names and the module's own attributes (for tab completion in a notebook)."""
    return sorted({*globals(), *__all__})
