"""SERAC: edit memory + scope classifier + counterfactual model (Mitchell et al., 2022b).

Edits are stored, never written into the base model. For each input row the scope classifier
compares an embedding of the row with the stored edits' embeddings; an in-scope row is answered
by the counterfactual model reading ``"edit: {target} | {prompt}\\n"`` followed by the row, the
others by the base model, untouched. Both parts are trained on a split of edits:

- classifier: a dual encoder over the frozen base model's hidden states (trained projection,
  attention pooling, cosine similarity with a learned scale and bias), binary cross-entropy;
- counterfactual model: a copy of the base model whose blocks are fine-tuned with
  L = c_edit * L_edit + c_loc * L_loc (L_loc = KL to the base model on out-of-scope prompts);
  with SSS, L_edit = C * SSS + (1 - C) * L_edit, SSS on the counterfactual model's hidden states.

Example:
    >>> editor = make_editor("serac")
    >>> with editor.edit(lm.model, lm.tok, [request]) as edited:
    ...     edited.model(input_ids=ids).logits        # routed row by row
    >>> train_serac(lm, examples_from_cases(cases), "my-serac", SERACTrainConfig(steps=700))
"""

from __future__ import annotations

import copy
import logging
import time
import weakref
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from transformers.modeling_outputs import CausalLMOutputWithPast

from ..errors import RequestError
from ..models import arch_spec
from ..sss import Reduction, sss_from_hidden
from ..text import (encode_for, encode_pairs, forward_hidden, forward_logits, join_parts, joined_text, kl_loc,
                    max_positions, n_tokens, pad_id, right_pad, target_nll, text_ids)
from ..types import EditCase, EditRequest
from .base import EditBase, model_lock
from .settings import block_indices, hidden_state_indices
from .training import (ASSETS, CheckpointError, LoopConfig, TrainExample, Validator, check_fingerprint,
                       data_label, load_trained, model_fingerprint, publish, sample_batch, step_rng,
                       train_loop, training_examples)

log = logging.getLogger(__name__)


def edit_prefix(request: EditRequest) -> str:
    """The text the counterfactual model reads before an in-scope input.

    The target comes first, so its first token always sits at the same position: copying it is
    then a positional lookup. With ``"edit: {prompt} {target}"`` the copy needs an induction
    circuit, which the default model's copy learnt more slowly: after 250 otherwise identical
    training steps, validation reliability 0.54 with that order and 0.71 with this one.
    Target and prompt are written less the spaces around them (" Rome" and "Rome" read the same).
    """
    return f"edit: {request.target_new.strip()} | {request.prompt.rstrip(' ')}\n"


@dataclass(frozen=True)
class SERACConfig:
    """Settings of a SERAC editor: which trained classifier and counterfactual model, and the scope threshold."""

    checkpoint: str | None = field(default=None, metadata={
        "help": "folder of a trained SERAC; None = the shipped one (serac, or serac-sss when sss_c > 0)"})
    sss_c: float = field(default=0.0, metadata={"help": "C the counterfactual model was trained with; picks the checkpoint"})
    threshold: float = field(default=0.5, metadata={"help": "in scope when the classifier's probability exceeds this"})

    def validate(self) -> "SERACConfig":
        """This config, checked; RequestError for C outside [0, 1] or a threshold outside (0, 1)."""
        if not 0.0 <= self.sss_c <= 1.0:
            raise RequestError(f"C must be in [0, 1], got {self.sss_c}")
        if not 0.0 < self.threshold < 1.0:
            raise RequestError(f"threshold must be in (0, 1), got {self.threshold}")
        return self

    def folder(self) -> Path:
        """The checkpoint folder this config reads."""
        return Path(self.checkpoint) if self.checkpoint else ASSETS / ("serac-sss" if self.sss_c > 0 else "serac")


@dataclass(frozen=True)
class SERACTrainConfig:
    """Settings of SERAC's training (``train_serac``); saved in the checkpoint's config.json."""

    feature_layers: tuple[int, ...] = field(default=(2, -1), metadata={"help": "hidden_states used by the classifier"})
    dim: int = field(default=128, metadata={"help": "classifier embedding size"})
    cf_layers: tuple[int, ...] | None = field(default=None, metadata={
        "help": "blocks of the counterfactual model that are fine-tuned (None: all; the others stay the base's)"})
    steps: int = field(default=1400, metadata={
        "help": "training steps (default model, validation reliability: 0.95 at 700, 0.98 at 1,400)"})
    batch_size: int = field(default=8, metadata={"help": "edits per step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the counterfactual model"})
    cls_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the classifier"})
    c_edit: float = field(default=1.0, metadata={
        "help": "weight of L_edit (1.0: with MEND's 0.1 the small counterfactual model learnt to read the "
                "edit too slowly for a 10-minute CPU budget)"})
    c_loc: float = field(default=0.3, metadata={
        "help": "weight of L_loc (the scope classifier already keeps most unrelated inputs away from the "
                "counterfactual model; on the default model 0.3 instead of 1.0 gave +4 points of "
                "reliability at the same locality)"})
    swap_targets: float = field(default=0.5, metadata={
        "help": "share of the counterfactual model's edits whose target is swapped for another training "
                "edit's target, so it learns to copy any target, not only the ones that fit the relation "
                "(on the default model: validation reliability 0.88 -> 0.91; 0 = off)"})
    sss_c: float = field(default=0.0, metadata={"help": "C of L_edit = C*SSS + (1-C)*L_edit; 0 disables SSS"})
    sss_reduction: Reduction = field(default="mean", metadata={"help": "'mean' (paper) or 'sum'"})
    save_every: int = field(default=200, metadata={"help": "resumable state every N steps"})
    validate: int = field(default=0, metadata={
        "help": "validation edits scored at the end (when the caller gives a validator; the CLI does for world data)"})
    seed: int = field(default=0, metadata={"help": "seeds initialisation and every step's sampling"})


class ScopeClassifier(nn.Module):
    """Dual encoder over base-model hidden states: P(query is in the scope of edit)."""

    def __init__(self, d_model: int, layers: Sequence[int], dim: int):
        super().__init__()
        self.layers = list(layers)
        self.proj = nn.Linear(d_model * len(self.layers), dim)
        self.attn = nn.Linear(dim, 1)
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.bias = nn.Parameter(torch.tensor(-5.0))

    def embed(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """hidden_states: tuple of (b, t, d) from the base model, mask (b, t) -> (b, dim), unit norm."""
        n = len(hidden_states)  # a layer past the model's last means its last
        h = torch.cat([hidden_states[i if i < n else n - 1].float() for i in self.layers], -1)
        z = torch.tanh(self.proj(h))  # (b, t, dim)
        w = self.attn(z)[..., 0].masked_fill(mask == 0, float("-inf")).softmax(-1)
        return F.normalize((w[..., None] * z).sum(1), dim=-1)

    def logits(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(b, dim), (n, dim) -> (b, n) logits of 'query b is in the scope of edit n'."""
        return self.scale * queries @ keys.T + self.bias


@torch.no_grad()
def base_hidden(model: nn.Module, tok, texts: Sequence[str]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """The base model's hidden states of ``texts`` (right-padded): (tuple of (b, t, d), mask (b, t)).

    Each text is read as ``text.text_ids`` gives it (no EOS a post-processor appends); RequestError
    for a text holding a special token of ``tok``.
    """
    device = next(model.parameters()).device
    ids, mask = right_pad([text_ids(tok, t) for t in texts], pad_id(tok), device)
    _, hidden_states = forward_hidden(model, ids, mask)
    return hidden_states, mask


def with_prefix(embed: nn.Module, embeds: torch.Tensor, mask: torch.Tensor, prefixes: Sequence[Sequence[int]]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Put prefix tokens before each row's real tokens (any padding side).

    embeds: (b, t, d), mask: (b, t). Returns embeds (b, T, d) and mask (b, T) of the right-padded
    prefixed rows, and positions (b, t): where each original position went (0 for padding).
    """
    b, t = mask.shape
    lengths = [len(p) + int(mask[r].sum()) for r, p in enumerate(prefixes)]
    width = max(lengths)
    device = embeds.device
    rows, positions = [], torch.zeros((b, t), dtype=torch.long, device=device)
    for r, p in enumerate(prefixes):
        real = mask[r].nonzero()[:, 0]
        pre = embed(torch.tensor(list(p), dtype=torch.long, device=device)).to(embeds.dtype)
        row = torch.cat([pre, embeds[r, real]], 0)
        rows.append(F.pad(row, (0, 0, 0, width - row.shape[0])))
        positions[r, real] = torch.arange(len(p), len(p) + len(real), device=device)
    new_mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths], device=device, dtype=mask.dtype)
    return torch.stack(rows), new_mask, positions


def _gather(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x: (b, T, k), positions (b, t) -> (b, t, k)."""
    return x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))


def counterfactual_forward(cf: nn.Module, tok, embeds: torch.Tensor, mask: torch.Tensor,
                           requests: Sequence[EditRequest]
                           ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """Run ``cf`` on each row behind its edit's prefix; hidden states aligned with the input rows.

    embeds: (b, t, d), mask (b, t) -> (tuple of (b, t, d) per layer, the prefixed rows' last
    hidden states (b, T, d) and their mask (b, T)).
    """
    prefixes = [text_ids(tok, edit_prefix(r)) for r in requests]
    new_embeds, new_mask, positions = with_prefix(cf.get_input_embeddings(), embeds, mask, prefixes)
    limit = max_positions(cf)
    if limit is not None and new_embeds.shape[1] > limit:
        raise RequestError(f"the edit text plus the input is {new_embeds.shape[1]} tokens, more than the "
                           f"model's {limit}; use a shorter prompt or target")
    out = cf(inputs_embeds=new_embeds, attention_mask=new_mask, output_hidden_states=True)
    return tuple(_gather(h, positions) for h in out.hidden_states), out.hidden_states[-1], new_mask


def check_fits(model: nn.Module, tok, requests: Sequence[EditRequest]) -> None:
    """RequestError, before an edit is stored, when a request's own rows outgrow the model's context:
    the prompt with its target (what the base model and the metrics read), and the edit text
    followed by them (what the counterfactual model reads for the request's own prompt)."""
    limit = max_positions(model)
    if limit is None:
        return
    encode_for(model, tok, [r.prompt for r in requests], [r.target_new for r in requests])
    for r in requests:
        head, tail = join_parts(r.prompt, r.target_new)
        n = n_tokens(tok, edit_prefix(r)) + n_tokens(tok, head + tail)
        if n > limit:
            raise RequestError(f"SERAC's edit text plus the input {r.prompt[:60]!r} is {n} tokens, more than the "
                               f"model's {limit}: use a shorter prompt or target")


class SERACNet(nn.Module):
    """The trained parts: the scope classifier and the counterfactual model."""

    def __init__(self, base: nn.Module, classifier: ScopeClassifier, cf_layers: Sequence[int] | None):
        super().__init__()
        self.classifier = classifier
        self.cf = copy.deepcopy(base).eval().requires_grad_(False)
        spec = arch_spec(base)
        n = spec.n_layers(base)
        cf_layers = range(n) if cf_layers is None else block_indices(base, cf_layers, "cf_layers")
        self.cf_prefixes = tuple(sorted({f"{spec.blocks}.{layer}." for layer in cf_layers}))

    def trained_cf_params(self) -> dict[str, nn.Parameter]:
        """The fine-tuned blocks' parameters (other blocks, embeddings, final norm and head are the base's)."""
        return {n: p for n, p in self.cf.named_parameters() if n.startswith(self.cf_prefixes)}


class EditMemory:
    """The edits applied to one base model: (request, classifier key) entries."""

    def __init__(self):
        self.entries: list[tuple[EditRequest, torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self.entries)


class SERACModel(nn.Module):
    """Call it like a Hugging Face causal LM; each row goes to the base or counterfactual model."""

    def __init__(self, base: nn.Module, net: SERACNet, tok, memory: EditMemory, threshold: float):
        super().__init__()
        self.base, self.net = base, net
        self.tok, self.memory, self.threshold = tok, memory, threshold

    @property
    def lock_owner(self) -> nn.Module:
        """The model whose lock guards this one (``locks.model_lock``): its base, whose weights it reads."""
        return self.base

    @property
    def config(self):
        """The base model's config (callers read its sizes and context length)."""
        return self.base.config

    def get_input_embeddings(self) -> nn.Module:
        """The base model's input embedding (shared by the counterfactual model's inputs)."""
        return self.base.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        """The base model's output head."""
        return self.base.get_output_embeddings()

    def scope(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(best edit index (b,), its in-scope probability (b,)) for rows with these base hidden states."""
        keys = torch.stack([k for _, k in self.memory.entries])  # (n, dim)
        probs = torch.sigmoid(self.net.classifier.logits(self.net.classifier.embed(hidden_states, mask), keys))
        p, idx = probs.max(-1)
        return idx, p

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=False,
                **kwargs) -> CausalLMOutputWithPast:
        """input_ids (b, t) or inputs_embeds (b, t, d) -> logits (b, t, vocab) [+ hidden_states]."""
        from transformers.modeling_outputs import CausalLMOutputWithPast  # here: not on the app's first page
        kwargs.pop("return_dict", None)
        kwargs.pop("use_cache", None)
        out = self.base(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                        output_hidden_states=True, use_cache=False, **kwargs)
        hidden = out.hidden_states
        if len(self.memory):
            mask = attention_mask if attention_mask is not None else torch.ones(hidden[0].shape[:2],
                                                                                 dtype=torch.long, device=hidden[0].device)
            idx, p = self.scope(hidden, mask)
            rows = (p > self.threshold).nonzero()[:, 0]
            if len(rows):
                embeds = inputs_embeds if inputs_embeds is not None else self.base.get_input_embeddings()(input_ids)
                reqs = [self.memory.entries[i][0] for i in idx[rows].tolist()]
                cf_hidden, _, _ = counterfactual_forward(self.net.cf, self.tok, embeds[rows], mask[rows], reqs)
                keep = mask[rows].bool()[..., None]  # padding keeps the base values
                hidden = tuple(h.index_put((rows,), torch.where(keep, c.to(h.dtype), h[rows]))
                               for h, c in zip(hidden, cf_hidden))
                out = CausalLMOutputWithPast(logits=self.base.get_output_embeddings()(hidden[-1]))
        return CausalLMOutputWithPast(logits=out.logits, hidden_states=hidden if output_hidden_states else None)


class SERACEdit(EditBase):
    """Edits held in a SERAC memory: ``apply`` adds them, ``revert`` removes them (base untouched).

    No parameter changes, so ``delta_norms()`` is {}.
    """

    def __init__(self, wrapper: SERACModel, entries: list[tuple[EditRequest, torch.Tensor]], info: dict):
        super().__init__(wrapper, info)
        self.entries = entries  # (request, classifier key (dim,)) per edit

    def _apply(self) -> None:
        """Add this edit's entries to the shared memory."""
        self._model.memory.entries.extend(self.entries)

    def _revert(self) -> None:
        """Remove exactly this edit's entries (others' stay, in order)."""
        mine = {id(e) for e in self.entries}
        self._model.memory.entries[:] = [e for e in self._model.memory.entries if id(e) not in mine]


class SERAC:
    """Memory-based editing; edits of one editor on one model accumulate (sequential editing)."""

    def __init__(self, config: SERACConfig = SERACConfig(), name: str = "serac"):
        self.config = config.validate()
        self.name = name
        self._wrappers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # base -> SERACModel

    def wrapper(self, model: nn.Module, tok) -> SERACModel:
        """The routed model for ``model`` (its memory shared by every edit of this editor)."""
        if model in self._wrappers:
            return self._wrappers[model]
        folder = self.config.folder()
        tensors, config = load_trained(folder, "serac")
        check_fingerprint(config["fingerprint"], model, folder)
        train = config["train"]
        if abs(train["sss_c"] - self.config.sss_c) > 1e-9:
            log.warning("%s was trained with C=%s, not %s", folder, train["sss_c"], self.config.sss_c)
        d_model = model.get_input_embeddings().weight.shape[1]
        net = SERACNet(model, ScopeClassifier(d_model, train["feature_layers"], train["dim"]), train["cf_layers"])
        net.classifier.load_state_dict({k[len("classifier."):]: v for k, v in tensors.items()
                                        if k.startswith("classifier.")})
        cf_params = net.trained_cf_params()
        with torch.no_grad():
            for name, p in cf_params.items():
                if "cf." + name not in tensors:
                    raise CheckpointError(f"{folder} lacks the counterfactual parameter {name}")
                p.copy_(tensors["cf." + name].to(p.dtype))
        net.to(next(model.parameters()).device).eval().requires_grad_(False)
        self._wrappers[model] = SERACModel(model, net, tok, EditMemory(), self.config.threshold)
        return self._wrappers[model]

    def edit(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> SERACEdit:
        """Embed the requests for the scope classifier; the edit adds them to the memory when applied."""
        if not requests:
            raise RequestError("no edit requests given")
        for r in requests:
            r.validate()
        check_fits(model, tok, requests)
        wrapper = self.wrapper(model, tok)
        start = time.perf_counter()
        hidden, mask = base_hidden(model, tok, [r.prompt for r in requests])
        with torch.no_grad():
            keys = wrapper.net.classifier.embed(hidden, mask)
        entries = [(r, k) for r, k in zip(requests, keys)]
        log.debug("%s: %d edits embedded in %.3fs", self.name, len(entries), time.perf_counter() - start)
        return SERACEdit(wrapper, entries, info={"memory_before": len(wrapper.memory)})


# ---------------------------------------------------------------- training

def _variant(rng, prompt: str, answers: Sequence[str]) -> str:
    """The classifier sees prompts alone and with an answer appended (teacher forcing does that)."""
    return prompt if rng.random() < 0.4 else joined_text(prompt, rng.choice(list(answers)))


def scope_queries(batch: Sequence[TrainExample], rng) -> tuple[list[str], list[int], list[bool]]:
    """The scope classifier's training queries for a batch of edits: (texts, owner edit, in scope).

    Per edit: its own prompt and one sampled paraphrase (in scope), up to three of its locality
    prompts (out of scope); each alone or with an answer appended (``_variant``): for in-scope
    queries the new target or the old answer, for locality prompts their answer or the new target.
    """
    texts, owner, positive = [], [], []
    for i, ex in enumerate(batch):
        answers = [ex.request.target_new] + ([ex.request.ground_truth] if ex.request.ground_truth else [])
        for p in (ex.equiv[0], *rng.sample(ex.equiv[1:], min(1, len(ex.equiv) - 1))):
            texts.append(_variant(rng, p, answers))
            owner.append(i)
            positive.append(True)
        for p, a in rng.sample(list(ex.loc), min(3, len(ex.loc))):
            texts.append(_variant(rng, p, [a, ex.request.target_new]))
            owner.append(i)
            positive.append(False)
    return texts, owner, positive


def classifier_loss(model: nn.Module, tok, classifier: ScopeClassifier, batch: Sequence[TrainExample], rng
                    ) -> torch.Tensor:
    """BCE of in-scope (own equivalents) vs out-of-scope (other edits' prompts, locality prompts)."""
    keys_h, keys_m = base_hidden(model, tok, [ex.request.prompt for ex in batch])
    texts, owner, positive = scope_queries(batch, rng)
    q_h, q_m = base_hidden(model, tok, texts)
    logits = classifier.logits(classifier.embed(q_h, q_m), classifier.embed(keys_h, keys_m))  # (q, B)
    labels, weight = scope_targets(batch, owner, positive)
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.device), weight=weight.to(logits.device))


def scope_targets(batch: Sequence[TrainExample], owner: Sequence[int], positive: Sequence[bool]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE labels and weights (queries, edits) for ``scope_queries``' queries against the batch's edits.

    Label 1 where the query is in the scope of the edit: its own in-scope queries, and those of any
    edit with the same prompt; every other pair is 0 (other edits' queries are negatives too).
    Weight 4 on the positives, which are rare among the pairs, 1 elsewhere.
    """
    labels = torch.zeros(len(owner), len(batch))
    for q, (i, pos) in enumerate(zip(owner, positive)):
        labels[q, i] = float(pos)
    same = torch.tensor([[batch[i].request.prompt == ex.request.prompt for ex in batch] for i in owner])
    labels = torch.where(same & torch.tensor(positive)[:, None], 1.0, labels)
    return labels, torch.where(labels > 0, 4.0, 1.0)


def counterfactual_loss(model: nn.Module, tok, cf: nn.Module, batch: Sequence[TrainExample],
                        cfg: SERACTrainConfig, rng) -> dict[str, torch.Tensor]:
    """c_edit * L_edit + c_loc * L_loc of the counterfactual model (L_edit with SSS when C > 0)."""
    device = next(cf.parameters()).device
    embed = cf.get_input_embeddings()
    eq_reqs, eq_prompts = [], []
    for ex in batch:
        request = ex.request
        if cfg.swap_targets > 0 and rng.random() < cfg.swap_targets:
            request = replace(request, target_new=rng.choice(batch).request.target_new)
        for p in (request.prompt, rng.choice(ex.equiv[1:] or ex.equiv)):
            eq_reqs.append(request)
            eq_prompts.append(p)
    eq = encode_pairs(tok, eq_prompts, [r.target_new for r in eq_reqs], device, max_positions(model))
    loc_pairs = [rng.choice(ex.loc) for ex in batch]
    loc = encode_pairs(tok, [p for p, _ in loc_pairs], [a for _, a in loc_pairs], device, max_positions(model))
    with torch.no_grad():
        pre_logits = forward_logits(model, loc)
    head = cf.get_output_embeddings()
    with torch.enable_grad():
        eq_hidden, full_last, full_mask = counterfactual_forward(cf, tok, embed(eq.input_ids), eq.attention_mask,
                                                                 eq_reqs)
        nll = target_nll(head(eq_hidden[-1]), eq)
        l_edit = nll.mean()
        out = {"edit": l_edit}  # components keep their graphs (tests use them)
        if cfg.sss_c > 0:  # lambda_max over every token the counterfactual model read, differentiable
            sss = sss_from_hidden(nll, full_last, full_mask, cfg.sss_reduction, create_graph=True).mean()
            l_edit = cfg.sss_c * sss + (1 - cfg.sss_c) * l_edit
            out["sss"] = sss
        loc_hidden, _, _ = counterfactual_forward(cf, tok, embed(loc.input_ids), loc.attention_mask,
                                               [ex.request for ex in batch])
        l_loc = kl_loc(pre_logits, head(loc_hidden[-1]), loc.attention_mask)
        out.update(loss=cfg.c_edit * l_edit + cfg.c_loc * l_loc, loc=l_loc)
    return out


def serac_state(net: SERACNet) -> dict[str, torch.Tensor]:
    """What a SERAC checkpoint stores: the classifier (fp32) and the counterfactual blocks (fp16)."""
    out = {f"classifier.{k}": v for k, v in net.classifier.state_dict().items()}
    out.update({f"cf.{k}": v.detach().half() for k, v in net.trained_cf_params().items()})
    return out


def train_serac(lm, data: Sequence[TrainExample] | Sequence[EditCase], out: Path | str,
                cfg: SERACTrainConfig = SERACTrainConfig(), resume: bool = False, progress: bool = True,
                source: str | None = None, validate: Validator | None = None) -> dict:
    """Train SERAC's classifier and counterfactual model for ``lm``; save the checkpoint in ``out``.

    data: TrainExamples or EditCases (e.g. the world's train split). ``source`` names the data in
    the checkpoint; ``validate`` scores the trained editor on ``cfg.validate`` edits (a
    ``training.Trainer``). Returns the summary also written to out/config.json. RequestError for
    bad settings (feature_layers or cf_layers the model does not have, checked before any work);
    CheckpointError for ``resume`` without a saved state.
    """
    hidden_state_indices(lm.model, cfg.feature_layers, "feature_layers")  # settings checked before any work
    if cfg.cf_layers is not None:
        block_indices(lm.model, cfg.cf_layers, "cf_layers")
    examples = training_examples(data, cfg.sss_c, cfg.seed)
    out, model, tok = Path(out), lm.model, lm.tok
    d_model = model.get_input_embeddings().weight.shape[1]
    net = SERACNet(model, ScopeClassifier(d_model, cfg.feature_layers, cfg.dim), cfg.cf_layers)
    net.to(next(model.parameters()).device)
    cf_params = list(net.trained_cf_params().values())
    for p in cf_params:
        p.requires_grad_(True)
    groups = [{"params": cf_params, "lr": cfg.lr}, {"params": list(net.classifier.parameters()), "lr": cfg.cls_lr}]
    # randomness: torch seeded by training_examples, each step's sampling by step_rng(cfg.seed, step)
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr, save_every=cfg.save_every)

    def step(i: int) -> dict[str, torch.Tensor]:
        rng = step_rng(cfg.seed, i)
        batch = sample_batch(examples, cfg.batch_size, rng)
        losses = counterfactual_loss(model, tok, net.cf, batch, cfg, rng)
        with torch.enable_grad():
            cls = classifier_loss(model, tok, net.classifier, batch, rng)
        return {**losses, "loss": losses["loss"] + cls, "cls": cls}

    with model_lock(model):
        summary = train_loop(net, step, groups, loop, out, resume, desc=f"SERAC (C={cfg.sss_c})",
                             progress=progress)
    config = {"kind": "serac", "train": asdict(cfg), "n_train_examples": len(examples),
              "data": data_label(source, examples), "fingerprint": model_fingerprint(model), **summary}
    return publish(out, lambda: serac_state(net), config,
                   lambda: SERAC(SERACConfig(checkpoint=str(out), sss_c=cfg.sss_c)), validate, cfg.validate)
