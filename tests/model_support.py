"""Helpers shared by the tests: tiny random models of every family and bit-exact state checks.

A plain module (not conftest.py), so test files import it by a name no other folder shadows.
"""

from __future__ import annotations

import torch

from sss_core.models import LoadedModel, arch_spec

# Tiny random configs, one per family. They share the default model's tokenizer.
TINY_FAMILIES = ("gpt2", "gptj", "gpt_neox", "llama")


def tiny_model(family: str, tok, seed: int = 0) -> LoadedModel:
    """A randomly initialised 2-block model of ``family`` (CPU, eval mode, frozen)."""
    from transformers import (GPT2Config, GPTJConfig, GPTNeoXConfig, LlamaConfig, AutoModelForCausalLM)
    v = len(tok)
    configs = {
        "gpt2": GPT2Config(vocab_size=v, n_positions=64, n_embd=32, n_layer=2, n_head=2),
        "gptj": GPTJConfig(vocab_size=v, n_positions=64, n_embd=32, n_layer=2, n_head=2, rotary_dim=8),
        "gpt_neox": GPTNeoXConfig(vocab_size=v, max_position_embeddings=64, hidden_size=32,
                                  num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        "llama": LlamaConfig(vocab_size=v, max_position_embeddings=64, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, intermediate_size=64),
    }
    torch.manual_seed(seed)
    config = configs[family]
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    return LoadedModel(model=model, tok=tok, spec=arch_spec(model), name=f"tiny-{family}")


def state_copy(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model, saved: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), f"{k} changed"
