"""Train the project's default model (a small GPT-2) on the built-in fact world.

Run: ``python -m sss_core train-default --out sss_core/assets/default-model --seed 0``.
Deterministic given the seed on one machine (same torch build, same thread count).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from ..jsonio import to_json
from .generate import World, build_world
from .relations import RELATIONS_BY_ID

log = logging.getLogger(__name__)
EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    world_seed: int = 0
    vocab_size: int = 1024  # small on purpose: generated names split into several tokens
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_positions: int = 64
    epochs: int = 40
    dropout: float = 0.0  # memorising facts: dropout only slows it down
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    threads: int = 2


def train_tokenizer(sentences: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE as in GPT-2, trained on the world's corpus."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sentences, trainer)
    # no token_type_ids: GPT-2 would add them as extra embeddings to every position
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=EOS, model_input_names=["input_ids", "attention_mask"])


def _batches(ids: list[list[int]], batch_size: int, pad: int, rng: random.Random):
    order = list(range(len(ids)))
    rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        rows = [ids[i] for i in order[start:start + batch_size]]
        width = max(map(len, rows))
        x = torch.full((len(rows), width), pad)  # (batch, tokens)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            x[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
        yield x, mask


@torch.no_grad()
def first_token_accuracy(model, tok, cases: list[tuple[str, str]], batch_size: int = 256) -> float:
    """Fraction of (prompt, answer) pairs whose answer's first token is the argmax."""
    if not cases:
        return float("nan")
    hits = 0
    tok.padding_side = "left"
    device = next(model.parameters()).device
    for start in range(0, len(cases), batch_size):
        chunk = cases[start:start + batch_size]
        enc = tok([p for p, _ in chunk], return_tensors="pt", padding=True).to(device)
        # left padding: positions must count real tokens only, or absolute position embeddings shift
        positions = (enc["attention_mask"].cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                       position_ids=positions).logits[:, -1]  # (batch, vocab)
        firsts = torch.tensor([tok(" " + a)["input_ids"][0] for _, a in chunk], device=device)
        hits += (logits.argmax(-1) == firsts).sum().item()
    return hits / len(cases)


def evaluate_world(model, tok, world: World) -> dict[str, float]:
    """First-target-token accuracy on training templates, held-out templates and one-hop."""
    train_cases, heldout_cases = [], []
    for f in world.facts:
        rel = RELATIONS_BY_ID[f.relation]
        train_cases += [(t.format(f.subject), f.object) for t in rel.train_templates]
        heldout_cases += [(t.format(f.subject), f.object) for t in rel.heldout_templates]
    return {"train_template_accuracy": first_token_accuracy(model, tok, train_cases),
            "heldout_template_accuracy": first_token_accuracy(model, tok, heldout_cases),
            "one_hop_accuracy": first_token_accuracy(model, tok, world.one_hop_cases())}


def train_default_model(out: Path, config: TrainConfig = TrainConfig(), progress: bool = True) -> dict:
    """Train tokenizer and model, save a Hugging Face folder to ``out``, return the card data."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    world = build_world(config.world_seed)
    sentences = world.training_sentences()
    tok = train_tokenizer(sentences, config.vocab_size)
    ids = [tok(s)["input_ids"] + [tok.eos_token_id] for s in sentences]
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tok), n_positions=config.n_positions, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * math.ceil(len(ids) / config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / config.warmup_steps)
                                              * 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0))))
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc="training default model", disable=not progress)
    sample = random.Random(config.seed).sample(world.facts, 300)
    probe_cases = [(RELATIONS_BY_ID[f.relation].train_templates[0].format(f.subject), f.object) for f in sample]
    history: list[dict] = []
    model.train()
    for epoch in range(config.epochs):
        for x, mask in _batches(ids, config.batch_size, tok.pad_token_id, rng):
            labels = x.masked_fill(mask == 0, -100)
            loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        if (epoch + 1) % 10 == 0:  # a cheap look at progress on a fixed sample of training prompts
            model.eval()
            probe_acc = first_token_accuracy(model, tok, probe_cases)
            model.train()
            history.append({"epoch": epoch + 1, "train_sample_accuracy": probe_acc})
            log.info("epoch %d: first-token accuracy on %d training prompts %.3f", epoch + 1, len(probe_cases), probe_acc)
    bar.close()
    model.eval()
    metrics = evaluate_world(model, tok, world)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    card = {"config": asdict(config), "metrics": metrics, "n_sentences": len(sentences),
            "n_facts": len(world.facts), "history": history, "n_parameters": sum(p.numel() for p in model.parameters()),
            "wall_seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__}
    (out / "training.json").write_text(to_json(card, indent=True))  # NaN -> null
    write_model_card(out, card)
    log.info("trained default model: %s", metrics)
    return card


def write_model_card(out: Path, card: dict) -> None:
    """MODEL_CARD.md from the training record (command, seed, size, wall time, accuracy)."""
    cfg, m = card["config"], card["metrics"]
    size_mb = (out / "model.safetensors").stat().st_size / 2**20
    text = f"""# Default model: a small GPT-2 trained on the built-in fact world

Made by the project, offline, with:

```bash
python -m sss_core train-default --out sss_core/assets/default-model --seed {cfg['seed']}
```

| | |
| --- | --- |
| architecture | GPT-2, {cfg['n_layer']} blocks, d_model {cfg['n_embd']}, {cfg['n_head']} heads, context {cfg['n_positions']} tokens |
| parameters | {card['n_parameters']:,} |
| tokenizer | byte-level BPE trained on the world corpus, {cfg['vocab_size']} tokens (generated names split into several tokens) |
| data | {card['n_facts']} facts of the world (seed {cfg['world_seed']}) in their training templates: {card['n_sentences']} sentences |
| training | {cfg['epochs']} epochs, batch {cfg['batch_size']}, AdamW lr {cfg['lr']} (cosine, {cfg['warmup_steps']} warm-up steps), seed {cfg['seed']} |
| wall time | {card['wall_seconds'] / 60:.1f} min on {cfg['threads']} CPU threads (torch {card['torch']}) |
| size on disk | {size_mb:.1f} MB (model.safetensors) |

## Measured accuracy (first target token, greedy)

| probe set | accuracy |
| --- | --- |
| training templates (every fact) | {m['train_template_accuracy']:.3f} |
| held-out templates (2 per relation, never trained) | {m['heldout_template_accuracy']:.3f} |
| one-hop composed questions (never trained) | {m['one_hop_accuracy']:.3f} |

The model knows the world's facts in the phrasings it was trained on; held-out phrasings measure
generality, and one-hop questions ask for a composition it was never shown. It is a teaching and
testing model, not a general language model: outside the world's vocabulary its text is poor.
Training is deterministic given the seed on one machine (same torch build and thread count).
"""
    (out / "MODEL_CARD.md").write_text(text)
