"""EasyEdit's teacher-forced metrics for one edit, with the raw predictions kept.

Accuracy probes (rewrite, paraphrase, portability): feed ``prompt + " " + answer`` and score the
fraction of answer tokens that are the argmax at the position predicting them. Locality probes:
the fraction of those positions where the post-edit argmax equals the pre-edit argmax.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..editors.base import Edit, Editor, WeightEdit, model_lock
from ..editors.per_edit import RowWeights, supports
from ..kept_readings import KeptReadings
from ..locks import reads_model
from ..sss import lambda_max
from ..text import PairBatch, encode_for, forward_logits, text_ids
from ..types import (LOCALITY_GROUPS, PORTABILITY_GROUPS, EditCase, EditRequest, EditResult, Probe,
                     ProbeResult)


@dataclass(frozen=True)
class TokenPrediction:
    """One probe's answer tokens and the model's teacher-forced argmax at each of them."""

    target_ids: tuple[int, ...]  # the answer's token ids
    argmax_ids: tuple[int, ...]  # the model's teacher-forced argmax at each answer position


@reads_model
@torch.no_grad()
def teacher_forced(model: nn.Module, tok, prompts: Sequence[str], answers: Sequence[str],
                   batch_size: int | None = None) -> list[TokenPrediction]:
    """Teacher-forced argmax over the answer tokens of each (prompt, answer) pair.

    Each pair is read as ``text.encode_for`` joins it (no EOS a post-processor appends); one
    ``TokenPrediction`` per pair, in order. The pairs are read shortest first in batches of
    ``batch_size`` rows (default ``rows_per_forward``). Raises RequestError for a text holding a
    special token of ``tok`` or a row longer than the model's context.
    """
    batch_size = batch_size or rows_per_forward(model)
    if not prompts:
        return []
    return _read_all(model, encode_for(model, tok, prompts, answers), batch_size)


def _read_all(model: nn.Module, rows: PairBatch, batch_size: int, group: Sequence[int] | None = None,
              on_batch: Callable[[list[int]], None] | None = None) -> list[TokenPrediction]:
    """``_predictions`` of every row of ``rows``, shortest first in batches of ``batch_size``, in the rows' order.

    ``group``: a key per row; within a batch (whose padding the order does not change) rows of one key are put
    together. ``on_batch`` is told each batch's row indices, in the order they are read, before it is read.
    """
    out: list[TokenPrediction | None] = [None] * rows.input_ids.shape[0]
    for chunk in by_length(rows.attention_mask.sum(1).cpu(), batch_size):
        picked = chunk.tolist() if group is None else sorted(chunk.tolist(), key=group.__getitem__)
        if on_batch is not None:
            on_batch(picked)
        for i, pred in zip(picked, _predictions(model, _rows(rows, picked))):
            out[i] = pred
    return out


def _rows(batch: PairBatch, picked: Sequence[int]) -> PairBatch:
    """The rows ``picked`` of ``batch``, in that order, cut to the longest of them."""
    index = torch.tensor(picked, device=batch.input_ids.device)
    width = int(batch.attention_mask[index].sum(1).max())
    return PairBatch(*(t[index, :width] for t in (batch.input_ids, batch.attention_mask, batch.target_mask)))


@torch.no_grad()
def _predictions(model: nn.Module, batch: PairBatch) -> list[TokenPrediction]:
    """One forward pass of ``batch``: each row's answer tokens and teacher-forced argmax, rows in order."""
    argmax = forward_logits(model, batch)[:, :-1].argmax(-1)  # (rows, tokens-1): prediction of token t+1
    mask = batch.predict_mask
    return [TokenPrediction(tuple(batch.input_ids[r, 1:][mask[r]].tolist()), tuple(argmax[r][mask[r]].tolist()))
            for r in range(batch.input_ids.shape[0])]


CPU_ROWS = 8  # rows per forward on a CPU: 2x faster than 64 for 69 mixed-length world probes (docs/performance.md)
GPU_ROWS = 64


def rows_per_forward(model: nn.Module) -> int:
    """How many probe rows one forward pass reads: few on a CPU, whose caches hold the activations of a
    few short rows but not of 64 (measured on the shipped model, one thread), many on a GPU."""
    return CPU_ROWS if next(model.parameters()).device.type == "cpu" else GPU_ROWS


def by_length(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Row indices in batches of at most ``batch_size``, shortest rows first, so each batch pads little.

    lengths: (rows,) real tokens per row. Right padding never changes a real token's logits in a causal
    model, so only the cost changes: the world's probes padded together are about half padding.
    """
    return list(lengths.argsort(stable=True).split(batch_size))


@reads_model
@torch.no_grad()
def top_k(model: nn.Module, tok, prompt: str, k: int = 5) -> list[tuple[str, float]]:
    """The k most likely next tokens after ``prompt`` with their probabilities, most likely first.

    The prompt is read as ``text.text_ids`` gives it: the prediction is made at its own last token,
    never at an EOS a post-processor appends. Raises RequestError for a special token in ``prompt``.
    """
    device = model.get_input_embeddings().weight.device
    ids = torch.tensor([text_ids(tok, prompt)], device=device)  # (1, tokens)
    probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), -1)
    p, i = probs.topk(k)
    return [(tok.decode([t]), round(v, 6)) for t, v in zip(i.tolist(), p.tolist())]


@reads_model
@torch.no_grad()
def answer_probability(model: nn.Module, tok, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
    """P(answer | prompt) under teacher forcing: the product of the answer tokens' probabilities.

    One float per pair; the pairs are read as ``text.encode_for`` joins them. Raises RequestError
    as ``teacher_forced`` does.
    """
    batch = encode_for(model, tok, prompts, answers)
    logp = torch.log_softmax(forward_logits(model, batch)[:, :-1].float(), -1)
    tok_lp = logp.gather(-1, batch.input_ids[:, 1:, None])[..., 0] * batch.predict_mask
    return tok_lp.sum(1).exp().tolist()


@reads_model
def request_warnings(model: nn.Module, tok, request: EditRequest) -> list[str]:
    """Things worth telling the user before an edit that do not stop it.

    A target the model already gives is not refused and not skipped: the edit runs as asked (an
    editor such as ROME still writes an update); ``analysis.current_answer_notice`` says afterwards
    what it did.
    """
    out = []
    pred = teacher_forced(model, tok, [request.prompt], [request.target_new])[0]
    if pred.target_ids and pred.argmax_ids == pred.target_ids:
        out.append(f"the model already predicts {request.target_new!r} for this prompt: it is already the top "
                   "answer, and reliability is 1.0 before editing. The edit still runs, and the editor may still "
                   "write an update that changes other answers; the result reports the update's norm and how "
                   "many probes changed their top-1 answer")
    if not request.prompt.isascii() or not request.target_new.isascii():
        out.append("the request has non-ASCII characters; the default model was trained on ASCII text only, "
                   "so they split into byte tokens it has rarely seen")
    return out


def _score(probe: Probe, pre: TokenPrediction, post: TokenPrediction) -> float:
    """EasyEdit's score of one probe: locality groups, the fraction of answer positions whose argmax
    is unchanged by the edit; the others, the fraction that equal the answer's tokens. NaN for an
    answer with no tokens."""
    if not post.target_ids:
        return math.nan
    if probe.group in LOCALITY_GROUPS:
        return sum(a == b for a, b in zip(pre.argmax_ids, post.argmax_ids)) / len(post.target_ids)
    return sum(a == b for a, b in zip(post.target_ids, post.argmax_ids)) / len(post.target_ids)


def summarize(results: Sequence[ProbeResult]) -> dict[str, float]:
    """Mean score per group, plus reliability, generality, locality and portability."""
    by_group: dict[str, list[float]] = {}
    for r in results:
        if not math.isnan(r.score):
            by_group.setdefault(r.probe.group, []).append(r.score)
    means = {g: sum(v) / len(v) for g, v in by_group.items()}

    def pooled(groups: Sequence[str]) -> float:
        vals = [s for g in groups for s in by_group.get(g, [])]
        return sum(vals) / len(vals) if vals else math.nan

    metrics = {"reliability": means.get("rewrite", math.nan),
               "generality": means.get("paraphrase", math.nan),
               "locality": pooled(LOCALITY_GROUPS),
               "portability": pooled(PORTABILITY_GROUPS)}
    metrics.update({f"{g}": v for g, v in means.items() if g not in ("rewrite", "paraphrase")})
    return metrics


def probes_of(case: EditCase) -> list[Probe]:
    """The case's probes, with the rewrite probe first (added when the case lacks it)."""
    rewrite = Probe(case.request.prompt, case.request.target_new, "rewrite")
    return [rewrite] + [p for p in case.probes if p.group != "rewrite"]


# The unedited model's side of a score, kept while its weights are the same (``KeptReadings``): the bench's
# editors, a C sweep's values and the Hypothesis view's editors score the same groups of cases, in the same
# batches. Cost: probe rows (and requests); 50,000 rows are about 3,500 world cases (14 probes each), about 10 MB.
_UNEDITED = KeptReadings(max_cost=50_000)


def forget_unedited_readings() -> None:
    """Drop every kept reading of ``unedited_predictions`` and ``unedited_lambda`` (a benchmark that times
    scoring from scratch; a test)."""
    _UNEDITED.clear()


def unedited_predictions(model: nn.Module, tok, cases: Sequence[EditCase], batch_size: int | None = None,
                         encoded: PairBatch | None = None) -> list[TokenPrediction]:
    """The model as it is (unedited), read for scoring edits of ``cases``: each probe's teacher-forced
    prediction, in ``probes_of`` order, case after case, read in batches of ``batch_size`` rows (default
    ``rows_per_forward``).

    Kept per model, tokenizer, cases and batch size while the model's weights are the same
    (``_UNEDITED``), so a second editor scoring the same group reads nothing: the very values reading
    again would give, bit for bit. ``encoded``: the probes already tokenised (``encode_for``), when the
    caller has them. Raises RequestError as ``teacher_forced`` does.
    """
    probes = tuple(tuple((p.prompt, p.answer) for p in probes_of(c)) for c in cases)
    batch_size = batch_size or rows_per_forward(model)

    def read() -> tuple[TokenPrediction, ...]:
        flat = [p for ps in probes for p in ps]
        rows = encoded if encoded is not None else encode_for(model, tok, [p for p, _ in flat], [a for _, a in flat])
        with model_lock(model), torch.no_grad():  # no other session's edit applied while it is read
            return tuple(_read_all(model, rows, batch_size))

    return list(_UNEDITED.read(model, ("probes", tok, probes, batch_size), read, cost=sum(map(len, probes))))


def unedited_lambda(model: nn.Module, tok, cases: Sequence[EditCase], batch_size: int | None = None) -> torch.Tensor:
    """lambda_max of each case's request on the model as it is: (cases,) float32, ``batch_size`` requests
    per batch (default ``rows_per_forward``); kept as ``unedited_predictions`` is. Raises RequestError as
    ``sss.lambda_max`` does."""
    batch_size = batch_size or rows_per_forward(model)
    requests = tuple((c.request.prompt, c.request.target_new) for c in cases)
    kept = _UNEDITED.read(model, ("lambda_max", tok, requests, batch_size),
                          lambda: lambda_max(model, tok, [p for p, _ in requests], [t for _, t in requests],
                                             batch_size=batch_size), cost=len(requests))
    return kept.clone()


def evaluate_edit(model: nn.Module, tok, case: EditCase, edit: Edit, editor_name: str = "",
                  seconds: float = math.nan, with_lambda: bool = True,
                  pre: list[TokenPrediction] | None = None) -> EditResult:
    """Score ``edit`` on ``case``: predictions before (model as is) and after (edit applied).

    The edit must not be applied on entry; it is reverted on exit, whatever happens.
    ``pre`` may pass predictions already made on the unedited model (sequential runs).
    """
    probes = probes_of(case)
    prompts, answers = [p.prompt for p in probes], [p.answer for p in probes]
    req = case.request
    pre = pre if pre is not None else unedited_predictions(model, tok, [case])
    lam_before = unedited_lambda(model, tok, [case])[0].item() if with_lambda else math.nan
    with edit:
        post = teacher_forced(edit.model, tok, prompts, answers)
        lam_after = (lambda_max(edit.model, tok, [req.prompt], [req.target_new]).item()
                     if with_lambda else math.nan)
    return _result(tok, case, edit, probes, pre, post, (lam_before, lam_after), editor_name, seconds)


def _result(tok, case: EditCase, edit: Edit, probes: Sequence[Probe], pre: Sequence[TokenPrediction],
            post: Sequence[TokenPrediction], lambdas: tuple[float, float], editor_name: str,
            seconds: float) -> EditResult:
    """The EditResult of one scored edit: each probe's score and tokens, the metrics, lambda_max before/after."""
    results = tuple(ProbeResult(p, _score(p, a, b), tuple(tok.convert_ids_to_tokens(list(b.target_ids))),
                                tuple(tok.convert_ids_to_tokens(list(a.argmax_ids))),
                                tuple(tok.convert_ids_to_tokens(list(b.argmax_ids))))
                    for p, a, b in zip(probes, pre, post))
    extra = {k: v for k, v in edit.info.items() if k in ("steps", "layer", "layers", "batch")}
    return EditResult(editor=editor_name, request=case.request, metrics=summarize(results), probes=results,
                      lambda_max_before=lambdas[0], lambda_max_after=lambdas[1], seconds=seconds, extra=extra)


def side_by_side(model: nn.Module, edits: Sequence[Edit]) -> RowWeights | None:
    """A ``RowWeights`` reading each of ``edits`` on its own batch rows, or None when they cannot be read
    that way (an edit that is not a ``WeightEdit`` of Linear/Conv1D parameters, or one already applied).

    A parameter some edits leave alone is read at the model's current value for those edits.
    """
    if not edits or not all(isinstance(e, WeightEdit) and not e.applied for e in edits):
        return None
    names = sorted({n for e in edits for n in e.new})
    if not supports(model, names):
        return None
    params = dict(model.named_parameters())
    return RowWeights(model, {n: [e.new.get(n, params[n].detach()) for e in edits] for n in names})


@reads_model
def evaluate_edits(model: nn.Module, tok, cases: Sequence[EditCase], edits: Sequence[Edit],
                   editor_name: str = "", seconds: Sequence[float] | None = None,
                   with_lambda: bool = True, batch_size: int | None = None) -> list[EditResult]:
    """``evaluate_edit`` of many independent edits (each of ``cases[i]`` by ``edits[i]``), scored together.

    The probes of all cases are read in shared batches, each row with its own case's edit
    (``per_edit.RowWeights``); the results equal ``evaluate_edit`` of each case within float tolerance
    (batch padding). Edits that cannot be read side by side (``side_by_side`` is None: SERAC's
    wrapper, a parameter that is not a Linear/Conv1D weight) are scored one at a time instead.
    The unedited model's side (predictions, lambda_max before) is kept for the next editor that scores
    the same ``cases`` (``unedited_predictions``). ``seconds``: each edit's time (NaN when None).
    Nothing is applied to the model.
    """
    seconds = list(seconds) if seconds is not None else [math.nan] * len(cases)
    batch_size = batch_size or rows_per_forward(model)
    rows = side_by_side(model, edits)
    if rows is None:
        return [evaluate_edit(model, tok, c, e, editor_name, s, with_lambda) for c, e, s in zip(cases, edits, seconds)]
    probes = [probes_of(c) for c in cases]
    flat = [p for ps in probes for p in ps]
    edit_of_row = [i for i, ps in enumerate(probes) for _ in ps]
    prompts, answers = [p.prompt for p in flat], [p.answer for p in flat]
    requests = [c.request for c in cases]
    encoded = encode_for(model, tok, prompts, answers)  # every probe of every case, tokenised once
    pre = unedited_predictions(model, tok, cases, batch_size, encoded)
    nan = torch.full((len(cases),), math.nan)
    lam_before = unedited_lambda(model, tok, cases, batch_size) if with_lambda else nan
    lam_after = []
    with rows:
        # rows of one edit together in each batch: one matrix product per edit in the edited layers
        post = _read_all(model, encoded, batch_size, group=edit_of_row,
                         on_batch=lambda picked: setattr(rows, "edit_of_row", [edit_of_row[i] for i in picked]))
        for start in range(0, len(cases) if with_lambda else 0, batch_size):
            part = requests[start:start + batch_size]
            rows.edit_of_row = list(range(start, start + len(part)))
            lam_after.append(lambda_max(model, tok, [r.prompt for r in part], [r.target_new for r in part]))
    lam_after_t = torch.cat(lam_after) if lam_after else nan
    out, at = [], 0
    for i, (case, edit, ps) in enumerate(zip(cases, edits, probes)):
        out.append(_result(tok, case, edit, ps, pre[at:at + len(ps)], post[at:at + len(ps)],
                           (lam_before[i].item(), lam_after_t[i].item()), editor_name, seconds[i]))
        at += len(ps)
    return out


def edit_and_score(model: nn.Module, tok, editor: Editor, case: EditCase, seed: int | None = None,
                   with_lambda: bool = True, pre: list[TokenPrediction] | None = None) -> tuple[Edit, EditResult]:
    """The one "edit, time, evaluate" step every runner shares: under the model's lock, seed torch (when
    ``seed`` is given), ask ``editor`` for an edit of ``case.request``, time it, and score it
    (``evaluate_edit``: applied for the scoring, reverted after). Returns (edit, result); the edit is
    not applied on return, so the caller may apply it again (sequential editing) or drop it.

    ``pre``: predictions already made on the unedited model. Raises what the editor raises for a
    request it cannot edit (SSSError subclasses), the model untouched.
    """
    with model_lock(model):
        if seed is not None:
            torch.manual_seed(seed)
        start = time.perf_counter()
        edit = editor.edit(model, tok, [case.request])
        seconds = time.perf_counter() - start
        return edit, evaluate_edit(model, tok, case, edit, editor.name, seconds, with_lambda, pre=pre)


def run_edit(model: nn.Module, tok, editor: Editor, case: EditCase, with_lambda: bool = True) -> EditResult:
    """Edit, evaluate and revert one case, holding the model's lock throughout (``edit_and_score``).

    Example:
        >>> res = run_edit(lm.model, lm.tok, make_editor("ft-l"), EditCase(request))
        >>> res.metrics["reliability"]
        1.0
    """
    return edit_and_score(model, tok, editor, case, with_lambda=with_lambda)[1]


def single_case(request: EditRequest, paraphrases: Sequence[str] = (),
                neighbours: Sequence[tuple[str, str]] = ()) -> EditCase:
    """An EditCase from a typed request, paraphrase prompts and (prompt, answer) neighbours."""
    probes = [Probe(p, request.target_new, "paraphrase") for p in paraphrases]
    probes += [Probe(p, a, "neighbour") for p, a in neighbours]
    return EditCase(request, tuple(probes))
