"""Score a trained editor at the end of its training: the mean metrics over held-out edits.

The trainers (``sss_core.editors.training.Trainer``) take a ``Validator``; the CLI builds one
here, so the editors never import the evaluation.

Example:
    >>> validate = validator(lm.model, lm.tok, world_split_cases("validation"))
    >>> train_mend(lm, examples, "out", MENDTrainConfig(validate=100), validate=validate)
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from torch import nn

from ..editors.base import Editor
from ..types import EditCase
from .metrics import run_edit


def evaluate_editor(model: nn.Module, tok, editor: Editor, cases: Sequence[EditCase],
                    limit: int = 200) -> dict[str, float]:
    """Mean reliability / generality / locality over the first ``limit`` cases, and the mean seconds per edit.

    Each case is edited, scored and reverted (``run_edit``, without lambda_max); a metric a case
    lacks (NaN) is left out of its mean. Values are rounded to 4 decimals.
    """
    sums: dict[str, list[float]] = {}
    for case in list(cases)[:limit]:
        res = run_edit(model, tok, editor, case, with_lambda=False)
        for k in ("reliability", "generality", "locality"):
            if not math.isnan(res.metrics.get(k, math.nan)):
                sums.setdefault(k, []).append(res.metrics[k])
        sums.setdefault("seconds_per_edit", []).append(res.seconds)
    return {k: round(sum(v) / len(v), 4) for k, v in sums.items()}


def validator(model: nn.Module, tok, cases: Sequence[EditCase]) -> Callable[[Editor, int], dict[str, float]]:
    """A trainer's ``validate(editor, n)``: ``evaluate_editor`` on the first n of ``cases``."""
    return lambda editor, n: evaluate_editor(model, tok, editor, cases, n)
