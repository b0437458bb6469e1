"""A tiny random GPT-2 with a tokenizer trained on the world, saved to disk: fast bench tests that
do not need the shipped default model (and can be loaded by a bench subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sss_core.models import LoadedModel, load_model
from sss_core.world.generate import build_world
from sss_core.world.train_default import train_tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel
    out = tmp_path_factory.mktemp("tiny-gpt2")
    tok = train_tokenizer(build_world(0).training_sentences(), 400)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=96, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def bench_lm(tiny_model_dir) -> LoadedModel:
    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run several times faster on one thread of a busy machine (and the bench CLI sets it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
