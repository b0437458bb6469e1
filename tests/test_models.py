import shutil

import pytest
import torch

from sss_core.errors import ModelLoadError
from sss_core.models import ARCH_SPECS, DEFAULT_MODEL, load_model


def test_default_model_loads_offline_on_cpu(default_lm):
    assert default_lm.device.type == "cpu"
    assert default_lm.spec is ARCH_SPECS["gpt2"]
    assert not default_lm.model.training
    assert not any(p.requires_grad for p in default_lm.model.parameters())
    assert (DEFAULT_MODEL / "model.safetensors").stat().st_size <= 25 * 2**20


def test_entity_names_are_multi_token(default_lm):
    from sss_core.world.generate import build_world
    people = [f.subject for f in build_world(0).facts if f.relation == "birthplace"]
    lengths = [len(default_lm.tok(" " + p)["input_ids"]) for p in people]
    assert sum(n > 1 for n in lengths) / len(lengths) > 0.95


def test_missing_path_and_missing_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)


def test_folder_without_tokenizer(tmp_path):
    shutil.copy(DEFAULT_MODEL / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelLoadError, match="tokenizer"):
        load_model(tmp_path)


def test_not_a_causal_lm(tmp_path):
    from transformers import ViTConfig
    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path)
    for f in DEFAULT_MODEL.glob("*token*"):
        shutil.copy(f, tmp_path / f.name)
    with pytest.raises(ModelLoadError, match="not a causal language model|not supported"):
        load_model(tmp_path)


def test_every_family_loads_from_a_local_folder(tiny_lm, tmp_path):
    tiny_lm.model.save_pretrained(tmp_path)
    tiny_lm.tok.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, device="cpu")
    assert loaded.spec is tiny_lm.spec
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded.model(ids).logits, tiny_lm.model(ids).logits)
    assert loaded.spec.mlp_out_module(loaded.model, -1) is not None


def test_bad_layer_index(default_lm):
    with pytest.raises(ValueError, match="layer 99 does not exist"):
        default_lm.spec.block(default_lm.model, 99)


@pytest.mark.parametrize("kwargs, message", [
    ({"device": "gpu"}, "unknown device 'gpu'"),
    ({"device_map": "everywhere"}, "neither one of auto"),
    *([({"device": "cuda"}, "no usable CUDA GPU")] if not torch.cuda.is_available() else []),
])
def test_unusable_device_or_device_map_is_refused_before_loading(kwargs, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(DEFAULT_MODEL, **kwargs)


def test_public_name_never_holds_a_path_of_this_machine(tmp_path):
    from sss_core.models import public_name
    assert public_name(DEFAULT_MODEL) == "sss_core/assets/default-model"
    assert public_name(str(DEFAULT_MODEL)) == "sss_core/assets/default-model"
    (tmp_path / "pythia-70m").mkdir()
    assert public_name(tmp_path / "pythia-70m") == "pythia-70m"
    assert public_name("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"


def test_loaded_model_is_named_without_a_path(default_lm, tiny_lm, tmp_path):
    assert default_lm.name == "sss_core/assets/default-model"
    tiny_lm.model.save_pretrained(tmp_path / "mine")
    tiny_lm.tok.save_pretrained(tmp_path / "mine")
    assert load_model(tmp_path / "mine", device="cpu").name == "mine"


def test_unreachable_hub_is_one_line_without_retries(monkeypatch, caplog):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # refuses at once, as with no network
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelLoadError) as exc:  # how fast: benchmarks/bench_cli_startup.py
        load_model("sss-lab-tests/no-such-model", device="cpu")
    message = str(exc.value)
    assert "\n" not in message and "not a local folder" in message and "cannot be reached" in message
    assert "Retry" not in caplog.text


def test_offline_mode_needs_no_request(monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(type(get_session()), "head", lambda *a, **k: pytest.fail("asked the hub while offline"))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        load_model("sss-lab-tests/no-such-model", device="cpu")
