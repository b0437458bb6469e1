"""Helpers shared by the tests: tiny random models of every family and bit-exact state checks.

A plain module (not conftest.py), so test files import it by a name no other folder shadows.
"""

from __future__ import annotations

import torch

from sss_core.models import LoadedModel, arch_spec

# Tiny random configs, one per family. They share the default model's tokenizer.
TINY_FAMILIES = ("gpt2", "gptj", "gpt_neox", "llama", "qwen2", "mistral")

# Configurations exercising each family's attention options (name -> family, config overrides):
# ROME/MEMIT's own forward must equal the model's forward on every one of them.
ATTENTION_VARIANTS = {
    "gpt2": ("gpt2", {}),
    "gpt2-scaled": ("gpt2", {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True}),
    "gptj-partial-rotary": ("gptj", {"rotary_dim": 4}),
    "gptj-full-rotary": ("gptj", {"rotary_dim": 16}),
    "neox-parallel": ("gpt_neox", {"use_parallel_residual": True, "rotary_pct": 0.25}),
    "neox-sequential": ("gpt_neox", {"use_parallel_residual": False, "rotary_pct": 1.0}),
    "llama-gqa": ("llama", {"num_attention_heads": 4, "num_key_value_heads": 1}),
    "llama-rope-linear": ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "llama-rope-dynamic": ("llama", {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
    "llama-rope-llama3": ("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 16}}),
    "llama-bias": ("llama", {"attention_bias": True, "mlp_bias": True}),
    "qwen2": ("qwen2", {}),
    "qwen2-sliding": ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    "mistral-gqa-sliding": ("mistral", {"num_attention_heads": 4, "num_key_value_heads": 2, "sliding_window": 4}),
    "mistral-no-window": ("mistral", {"sliding_window": None}),
}


def tiny_config(family: str, vocab: int, **overrides):
    """The tiny 2-block config of ``family`` (64 positions, width 32), with ``overrides`` set."""
    from transformers import GPT2Config, GPTJConfig, GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config
    common = {"vocab_size": vocab, "max_position_embeddings": 64, "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 2, "intermediate_size": 64}
    gpt = {"vocab_size": vocab, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2}
    base = {
        "gpt2": (GPT2Config, gpt),
        "gptj": (GPTJConfig, {**gpt, "rotary_dim": 8}),
        "gpt_neox": (GPTNeoXConfig, common),
        "llama": (LlamaConfig, {**common, "num_key_value_heads": 2}),
        "qwen2": (Qwen2Config, {**common, "num_key_value_heads": 1}),
        "mistral": (MistralConfig, {**common, "num_key_value_heads": 1, "sliding_window": 16}),
    }
    cls, kwargs = base[family]
    config = cls(**{**kwargs, **overrides})
    config._attn_implementation = "eager"
    return config


def tiny_model(family: str, tok, seed: int = 0, **overrides) -> LoadedModel:
    """A randomly initialised 2-block model of ``family`` (CPU, eval mode, frozen), config ``overrides`` set."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    config = tiny_config(family, len(tok), **overrides)
    model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    return LoadedModel(model=model, tok=tok, spec=arch_spec(model), name=f"tiny-{family}")


def state_copy(model) -> dict[str, torch.Tensor]:
    """A detached copy of every tensor of ``model``'s state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model, saved: dict[str, torch.Tensor]) -> None:
    """AssertionError naming the first tensor of ``model`` that differs from ``saved`` in any bit."""
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), f"{k} changed"
