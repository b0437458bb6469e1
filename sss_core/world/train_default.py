"""Train the project's default model (a small GPT-2) on the built-in fact world.

Run: ``python -m sss_core train-default --out sss_core/assets/default-model --seed 0``.
Deterministic given the seed on one machine (same torch build, same thread count).

The corpus is every fact in every training template of its relation (one sentence each) plus, each
epoch, one *profile* per subject: all its facts in a random order, each in a randomly drawn training
template, packed into sequences of up to ``n_positions`` tokens. Profiles train every position of
the context (SERAC reads an edit's text and the question together, up to about 90 tokens on
CounterFact) and show each fact in varied wording and order, which helps a small model store a fact
by its subject and relation rather than by one phrasing (Allen-Zhu and Li, "Physics of Language
Models: Part 3.1", 2023, knowledge augmentation).
"""

from __future__ import annotations

import json
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
from ..embeddings import embed_prompts
from .generate import N_COMPANIES, N_PEOPLE, World, build_world
from .relations import RELATIONS_BY_ID, heldout_inside_trained

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
    n_positions: int = 256
    epochs: int = 10
    dropout: float = 0.0  # memorising facts: dropout only slows it down
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    threads: int = 1  # one thread: on a shared 2-core machine two threads ran 5x slower (busy-waiting)
    profiles: bool = True  # one packed profile per subject each epoch (module docstring)
    profile_batch_size: int = 8  # packed sequences of up to n_positions tokens per batch
    world_people: int = N_PEOPLE  # world size (smaller only to measure curves)
    world_companies: int = N_COMPANIES


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


def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask, both (batch, tokens)."""
    width = max(map(len, rows))
    x = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        x[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
    return x, mask


def _chunks(ids: list[list[int]], batch_size: int, rng: random.Random) -> list[list[list[int]]]:
    """``ids`` shuffled and cut into batches of ``batch_size`` rows."""
    order = list(range(len(ids)))
    rng.shuffle(order)
    return [[ids[i] for i in order[start:start + batch_size]] for start in range(0, len(order), batch_size)]


def _batches(ids: list[list[int]], batch_size: int, pad: int, rng: random.Random):
    """Shuffled (ids, mask) batches of ``ids``, each (batch, tokens)."""
    for rows in _chunks(ids, batch_size, rng):
        yield _pad(rows, pad)


def profiles(world: World, rng: random.Random) -> list[str]:
    """One text per subject: all its facts, shuffled, each in a random training template."""
    out = []
    for subject, facts in world.facts_by_subject.items():
        facts = list(facts)
        rng.shuffle(facts)
        out.append(" ".join(f"{rng.choice(RELATIONS_BY_ID[f.relation].train_templates).format(subject)} {f.object}."
                            for f in facts))
    return out


def pack(ids: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Concatenate token rows greedily into sequences of at most ``max_tokens`` (a longer row is cut)."""
    packed: list[list[int]] = []
    current: list[int] = []
    for row in ids:
        row = row[:max_tokens]
        if current and len(current) + len(row) > max_tokens:
            packed.append(current)
            current = []
        current = current + row
    if current:
        packed.append(current)
    return packed


def epoch_batches(sentence_ids: list[list[int]], world: World, tok, config: "TrainConfig",
                  rng: random.Random) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch: batches of single sentences and (with ``config.profiles``) of packed profiles, shuffled."""
    batches = _chunks(sentence_ids, config.batch_size, rng)
    if config.profiles:
        texts = profiles(world, rng)
        rows = [ids + [tok.eos_token_id] for ids in tok(texts)["input_ids"]]
        rng.shuffle(rows)
        batches += _chunks(pack(rows, config.n_positions), config.profile_batch_size, rng)
    rng.shuffle(batches)
    return [_pad(rows, tok.pad_token_id) for rows in batches]


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


def _cases(world: World, facts, which: str) -> list[tuple[str, str]]:
    """(prompt, object) for ``facts`` in their relation's ``which`` templates ("train" or "heldout")."""
    return [(t.format(f.subject), f.object) for f in facts
            for t in getattr(RELATIONS_BY_ID[f.relation], f"{which}_templates")]


def evaluate_world(model, tok, world: World) -> dict[str, float]:
    """First-target-token accuracy on training templates, held-out templates and one-hop."""
    inside = heldout_inside_trained()
    clean = [(t.format(f.subject), f.object) for f in world.facts
             for t in RELATIONS_BY_ID[f.relation].heldout_templates if (f.relation, t) not in inside]
    return {"train_template_accuracy": first_token_accuracy(model, tok, _cases(world, world.facts, "train")),
            "heldout_template_accuracy": first_token_accuracy(model, tok, _cases(world, world.facts, "heldout")),
            "heldout_clean_accuracy": first_token_accuracy(model, tok, clean),
            "one_hop_accuracy": first_token_accuracy(model, tok, world.one_hop_cases())}


def embedding_structure(model, tok, world: World, per_relation: int = 20, seed: int = 0,
                        pooling: str = "last") -> dict[str, float]:
    """How the model's sentence embeddings group the paraphrases of one fact.

    For ``per_relation`` facts of each relation, every template of the relation (trained and held
    out) is embedded (``sss_core.embeddings``, last hidden state, ``pooling``) and compared by cosine
    similarity. Returns:

    - ``paraphrase_cosine``: mean cosine between two phrasings of the same fact;
    - ``same_relation_cosine``: mean cosine between phrasings of two different facts of the same relation;
    - ``separated_share``: share of facts whose least similar pair of own phrasings is more similar
      than any phrasing of any other sampled fact is to one of them (the fact's phrasings are nearer
      each other than any other fact);
    - ``nearest_is_paraphrase``: share of phrasings whose nearest other phrasing is of the same fact.
    """
    rng = random.Random(seed)
    facts = [f for rel in world.relations
             for f in rng.sample(world.facts_by_relation[rel.id], min(per_relation, len(world.facts_by_relation[rel.id])))]
    prompts, owner = [], []
    for k, f in enumerate(facts):
        for t in RELATIONS_BY_ID[f.relation].templates:
            prompts.append(t.format(f.subject))
            owner.append(k)
    emb = torch.from_numpy(embed_prompts(model, tok, prompts, pooling=pooling)).double()  # (n, d_model)
    emb = torch.nn.functional.normalize(emb, dim=1)
    cos = emb @ emb.T  # (n, n)
    owner_t = torch.tensor(owner)
    relation_t = torch.tensor([world.relations.index(RELATIONS_BY_ID[facts[k].relation]) for k in owner])
    same_fact = owner_t[:, None] == owner_t[None, :]
    same_relation = relation_t[:, None] == relation_t[None, :]
    eye = torch.eye(len(prompts), dtype=torch.bool)
    para, cross, separated = [], [], 0
    for k in range(len(facts)):
        mine = owner_t == k
        own = cos[mine][:, mine][~eye[mine][:, mine]]
        para.append(own.mean().item())
        cross.append(cos[mine][:, same_relation[mine][0] & ~mine].mean().item())
        separated += int(own.min() > cos[mine][:, ~mine].max())
    nearest = cos.masked_fill(eye, -2).argmax(1)
    return {"paraphrase_cosine": sum(para) / len(para), "same_relation_cosine": sum(cross) / len(cross),
            "separated_share": separated / len(facts),
            "nearest_is_paraphrase": same_fact[torch.arange(len(prompts)), nearest].double().mean().item(),
            "facts": len(facts), "sentences": len(prompts), "pooling": pooling}


def train_default_model(out: Path, config: TrainConfig = TrainConfig(), progress: bool = True) -> dict:
    """Train tokenizer and model, save a Hugging Face folder to ``out``, return the card data.

    Logs and records (in the card's ``history``) accuracy on fixed samples of 300 facts every two
    epochs, with the wall seconds so far: the learning curve against training time.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    world = build_world(config.world_seed, n_people=config.world_people, n_companies=config.world_companies)
    sentences = world.training_sentences()
    tok = train_tokenizer(sentences, config.vocab_size)
    ids = [row + [tok.eos_token_id] for row in tok(sentences)["input_ids"]]
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tok), n_positions=config.n_positions, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = epoch_batches(ids, world, tok, config, rng)
    total = config.epochs * len(batches)  # profile packing varies a little per epoch; the schedule ends near here
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / config.warmup_steps)
                                              * 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0))))
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc="training default model", disable=not progress)
    sample = random.Random(config.seed).sample(world.facts, min(300, len(world.facts)))
    curve_sets = {"train_sample_accuracy": [(RELATIONS_BY_ID[f.relation].train_templates[0].format(f.subject), f.object)
                                            for f in sample],
                  "heldout_sample_accuracy": _cases(world, sample, "heldout"),
                  "one_hop_sample_accuracy": random.Random(config.seed).sample(
                      world.one_hop_cases(), min(300, len(world.one_hop_cases())))}
    history: list[dict] = []
    model.train()
    for epoch in range(config.epochs):
        if epoch:
            batches = epoch_batches(ids, world, tok, config, rng)
        for x, mask in batches:
            labels = x.masked_fill(mask == 0, -100)
            loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        if (epoch + 1) % 2 == 0 or epoch + 1 == config.epochs:  # a cheap look at the learning curve
            model.eval()
            point = {"epoch": epoch + 1, "wall_seconds": round(time.perf_counter() - start, 1)}
            point.update({name: first_token_accuracy(model, tok, cases) for name, cases in curve_sets.items()})
            model.train()
            history.append(point)
            log.info("learning curve: %s", point)
    bar.close()
    model.eval()
    train_seconds = time.perf_counter() - start
    metrics = evaluate_world(model, tok, world)
    structure = {pooling: embedding_structure(model, tok, world, seed=config.seed, pooling=pooling)
                 for pooling in ("last", "mean")}
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    portable_tokenizer_config(out)
    card = {"config": asdict(config), "metrics": metrics, "embedding_structure": structure,
            "n_sentences": len(sentences), "n_facts": len(world.facts),
            "n_train_templates": sum(len(r.train_templates) for r in world.relations),
            "n_heldout_templates": sum(len(r.heldout_templates) for r in world.relations),
            "history": history, "n_parameters": sum(p.numel() for p in model.parameters()),
            "wall_seconds": round(train_seconds, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1),
            "torch": torch.__version__}
    (out / "training.json").write_text(to_json(card, indent=True))  # NaN -> null
    write_model_card(out, card)
    log.info("trained default model: %s", metrics)
    return card


def portable_tokenizer_config(out: Path) -> None:
    """Name the tokenizer class so that transformers 4 and 5 both load the folder.

    transformers 5 saves ``"tokenizer_class": "TokenizersBackend"`` (and a ``backend`` key), a class
    transformers 4 does not have; ``PreTrainedTokenizerFast`` is the same fast tokenizer in both.
    """
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.pop("backend", None)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2) + "\n")


def write_model_card(out: Path, card: dict) -> None:
    """MODEL_CARD.md from the training record (command, seed, size, wall time, accuracy, curve, structure)."""
    cfg, m = card["config"], card["metrics"]
    size_mb = (out / "model.safetensors").stat().st_size / 2**20
    curve = "\n".join(f"| {h['epoch']} | {h['wall_seconds'] / 60:.1f} | {h['train_sample_accuracy']:.3f} | "
                      f"{h['heldout_sample_accuracy']:.3f} | {h['one_hop_sample_accuracy']:.3f} |"
                      for h in card["history"])
    structure = "\n".join(
        f"| {pooling} | {v['paraphrase_cosine']:.3f} | {v['same_relation_cosine']:.3f} | {v['separated_share']:.3f} | "
        f"{v['nearest_is_paraphrase']:.3f} |" for pooling, v in card["embedding_structure"].items())
    sample = next(iter(card["embedding_structure"].values()))
    profiles = ("plus, each epoch, one profile per subject (all its facts, shuffled, each in a random training "
                f"template) packed into sequences of up to {cfg['n_positions']} tokens" if cfg.get("profiles") else "")
    one_hop = (f"here {m['one_hop_accuracy']:.3f}, " + ("the aim of 0.30 is met" if m['one_hop_accuracy'] >= 0.30
               else "below the aim of 0.30 (the learning curve below shows how it moved with training)"))
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
| data | {card['n_facts']} facts of the world (seed {cfg['world_seed']}), each in every training template of its relation ({card['n_train_templates']} training templates over 13 relations): {card['n_sentences']} sentences; {profiles} |
| training | {cfg['epochs']} epochs, batch {cfg['batch_size']} sentences / {cfg['profile_batch_size']} packed profiles, AdamW lr {cfg['lr']} (cosine, {cfg['warmup_steps']} warm-up steps), seed {cfg['seed']} |
| wall time | {card['wall_seconds'] / 60:.1f} min on {cfg['threads']} CPU thread(s) of a 2-core machine (torch {card['torch']}); CPU time {card.get('cpu_seconds', float('nan')) / 60:.1f} min |
| size on disk | {size_mb:.1f} MB (model.safetensors) |

## Measured accuracy (first target token, greedy)

| probe set | accuracy |
| --- | --- |
| training templates (every fact) | {m['train_template_accuracy']:.3f} |
| held-out templates (2 per relation, never trained for that relation) | {m['heldout_template_accuracy']:.3f} |
| held-out templates whose text is not inside a trained one ({26 - len(heldout_inside_trained())} of 26) | {m.get('heldout_clean_accuracy', float('nan')):.3f} |
| one-hop composed questions (never trained) | {m['one_hop_accuracy']:.3f} |

Held-out templates: every relation but one is phrased in its own wordings and in eight generic frames
("The N of X is", "X's N is", "Q: What is the N of X? A:", ...); two frames per relation, a different
pair for each, are never trained with that relation (`sss_core/world/relations.py`). Held-out accuracy
asks whether the model recognises a frame it learned on other relations as a paraphrase of this one:
this is what an edit's generality measures. A known flaw: for capital, currency, occupation and
industry the held-out "X's N is" is the tail of the trained frame "We know that X's N is", so those
four held-out phrasings occur inside training sentences (`relations.heldout_inside_trained`); the
second row leaves them out. One-hop questions ask for a composition (the capital of
the country of which X is a citizen) that the model was never shown; a small transformer trained on
single facts rarely composes them: {one_hop}.

## Learning curve (fixed samples of 300 facts; wall minutes include the evaluations)

| epoch | wall min | first training template | held-out templates | one-hop |
| --- | --- | --- | --- | --- |
{curve}

## Structure of the embedding space

Last hidden state of each prompt (pooled at its last token, or averaged over its tokens), compared
by cosine similarity, over {sample['facts']} facts ({sample['sentences']} prompts: each fact in every
template of its relation, trained and held out). "Paraphrases" are two phrasings of one fact; "same
relation" are phrasings of two different facts of the same relation. "Separated" is the share of facts
whose least similar pair of own phrasings is more similar than any phrasing of any other fact is to
one of them; "nearest" the share of phrasings whose nearest other phrasing is of the same fact.

| pooling | paraphrases | same relation | separated | nearest is a paraphrase |
| --- | --- | --- | --- | --- |
{structure}

## How it got here

The first default model (v1: 3 trained and 2 held-out templates per relation, no profiles, 40 epochs,
context 64) reached 0.978 on training templates, 0.337 on held-out ones and 0.026 on one-hop. More
templates per relation made the difference: on a smaller world (80 people, 16 companies; 8 to 9
trained templates per relation, no profiles, 12-epoch schedule) held-out accuracy was 0.63 after 3
epochs and 0.92 after 6 (training templates 0.74 and 0.99). Size and context were kept; 2 CPU threads
ran about five times slower than 1 on the shared machine (threads busy-waiting for each other).

The model knows the world's facts in the phrasings it was trained on; held-out phrasings measure
generality. It is a teaching and testing model, not a general language model: outside the world's
vocabulary its text is poor. Training is deterministic given the seed on one machine (same torch
build and thread count).
"""
    (out / "MODEL_CARD.md").write_text(text)
