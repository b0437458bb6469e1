"""Load a causal LM and describe where its parts live (one ArchSpec per family).

Example:
    >>> lm = load_model(DEFAULT_MODEL)               # the shipped model, offline
    >>> lm.spec.mlp_out_module(lm.model, 0)          # block 0's MLP output projection
"""

from __future__ import annotations

import contextlib

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelLoadError
from .resources import default_model_path

if TYPE_CHECKING:  # annotations only: torch is imported where it is used, so that a wrong model name or an
    import torch  # unreachable hub is refused without the seconds torch takes to import
    from torch import nn

log = logging.getLogger(__name__)

DEFAULT_MODEL = default_model_path()  # sss_core/assets/default-model, found as package data
HUB_CHECK_SECONDS = 3.0  # how long to wait for the hub before deciding there is no network


@dataclass(frozen=True)
class ArchSpec:
    """Module names of one model family, relative to the model (blocks) or a block (the rest)."""

    blocks: str  # attribute path of the list of transformer blocks
    mlp_out: str  # the MLP output projection inside a block (what FT-L, ROME, MEMIT edit)
    mlp_in: str  # the MLP input projection inside a block
    final_norm: str
    embed: str
    conv1d: bool = False  # GPT-2's Conv1D stores weight as (in, out), nn.Linear as (out, in)

    def block(self, model: nn.Module, layer: int) -> nn.Module:
        """Transformer block ``layer`` of ``model`` (negative counts from the end, as in Python).

        Raises:
            ValueError: the model has no such block; the message gives the valid range.
        """
        blocks = model.get_submodule(self.blocks)
        if not -len(blocks) <= layer < len(blocks):
            raise ValueError(f"layer {layer} does not exist: the model has {len(blocks)} blocks (0..{len(blocks) - 1})")
        return blocks[layer]

    def n_layers(self, model: nn.Module) -> int:
        """Number of transformer blocks of ``model``."""
        return len(model.get_submodule(self.blocks))

    def mlp_out_name(self, model: nn.Module, layer: int) -> str:
        """Full module name of block ``layer``'s MLP output projection, e.g. ``"transformer.h.0.mlp.c_proj"``.

        A negative ``layer`` counts from the end and is written as its non-negative index.
        """
        layer = layer % self.n_layers(model)
        return f"{self.blocks}.{layer}.{self.mlp_out}"

    def mlp_out_module(self, model: nn.Module, layer: int) -> nn.Module:
        """Block ``layer``'s MLP output projection (the weight FT-L, ROME and MEMIT edit)."""
        return model.get_submodule(self.mlp_out_name(model, layer))

    def weight_out_in(self, weight: torch.Tensor) -> torch.Tensor:
        """View a projection weight as (out_features, in_features) whatever the family."""
        return weight.T if self.conv1d else weight


_GPT2 = ArchSpec("transformer.h", "mlp.c_proj", "mlp.c_fc", "transformer.ln_f", "transformer.wte", conv1d=True)
_GPTJ = ArchSpec("transformer.h", "mlp.fc_out", "mlp.fc_in", "transformer.ln_f", "transformer.wte")
_NEOX = ArchSpec("gpt_neox.layers", "mlp.dense_4h_to_h", "mlp.dense_h_to_4h",
                 "gpt_neox.final_layer_norm", "gpt_neox.embed_in")
_LLAMA = ArchSpec("model.layers", "mlp.down_proj", "mlp.up_proj", "model.norm", "model.embed_tokens")

# config.model_type -> ArchSpec. The only place that knows about model families.
ARCH_SPECS: dict[str, ArchSpec] = {
    "gpt2": _GPT2, "gptj": _GPTJ, "gpt_neox": _NEOX,
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA,
}


def arch_spec(model: nn.Module) -> ArchSpec:
    """The ArchSpec of ``model``'s family, looked up by ``model.config.model_type``.

    Raises:
        ModelLoadError: the family is not in ``ARCH_SPECS``; the message lists the supported ones.
    """
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCH_SPECS:
        raise ModelLoadError(f"model family {model_type!r} is not supported; supported: "
                             f"{', '.join(sorted(ARCH_SPECS))}")
    return ARCH_SPECS[model_type]


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode, its tokenizer and its ArchSpec."""

    model: nn.Module
    tok: object  # a transformers PreTrainedTokenizerBase
    spec: ArchSpec
    name: str  # public_name(): a hub name, a folder's name, or the shipped model's place in the package

    @property
    def device(self) -> torch.device:
        """Device of the model's first parameter (with a device map: where the input ids go)."""
        return next(self.model.parameters()).device


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when present, else the CPU; otherwise the named device, which must exist here."""
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but this machine has no usable CUDA GPU: "
                             "use --device cpu (or auto)")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ModelLoadError(f"device {device!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return resolved


def _check_device_map(device_map: str | dict) -> None:
    """A string device map is a placement strategy or one device; say so before loading anything."""
    if isinstance(device_map, str) and device_map not in DEVICE_MAP_STRATEGIES:
        try:
            resolve_device(device_map)
        except ModelLoadError as exc:
            raise ModelLoadError(f"device map {device_map!r} is neither one of "
                                 f"{', '.join(DEVICE_MAP_STRATEGIES)} nor a usable device ({exc})") from exc


def _dtype_kwarg() -> str:
    """``from_pretrained``'s dtype argument: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__).release >= (4, 56) else "torch_dtype"


def public_name(name_or_path: str | Path) -> str:
    """The name a model is shown and written under: never a path of this machine's file system.

    The shipped model -> ``"sss_core/assets/default-model"`` (its place in the package); a local
    folder -> the folder's name; a hub name -> itself. Results, exports and logs carry this name,
    so a file written on a server does not give away where that server keeps its models.

    Example:
        >>> public_name(DEFAULT_MODEL), public_name("/data/models/pythia-70m"), public_name("gpt2")
        ('sss_core/assets/default-model', 'pythia-70m', 'gpt2')
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists() and path.resolve() == DEFAULT_MODEL.resolve():
        return "sss_core/assets/default-model"
    if path.is_absolute() or name.startswith((".", "~")) or path.exists():
        return path.resolve().name or name
    return name


def _hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be used now, in a few words, or None when it answers.

    Offline mode (HF_HUB_OFFLINE=1) says so without a request; otherwise one HEAD request to the
    hub's endpoint (HF_ENDPOINT), through huggingface_hub's own session (its proxies), with a short
    timeout and no retries: a machine without network answers in well under a second, instead of
    the minute of retries a download would spend.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_CHECK_SECONDS)
    except Exception as exc:  # noqa: BLE001 (requests' or httpx's errors, whichever the hub version uses)
        return f"no network connection to {constants.ENDPOINT} ({type(exc).__name__})"
    return None


def _in_hub_cache(name: str) -> bool:
    """Whether the local Hugging Face cache holds ``name``'s config.json (a hub name downloaded before)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repository id (HFValidationError): nothing of it can be cached
        return False


def _not_reachable(name: str, why: str) -> str:
    """The one-line error for a hub name that is neither a local folder nor cached, with no hub to ask."""
    return (f"{name!r} is not a local folder and not in the Hugging Face cache, and the hub cannot be reached "
            f"({why}): give the path of a model folder, or connect to the network once to download it")


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device = "auto",
               dtype: torch.dtype | str | None = None, trust_remote_code: bool = False,
               device_map: str | dict | None = None) -> LoadedModel:
    """Load a Hugging Face causal LM from a local folder or a hub name.

    ``device="auto"`` picks CUDA when present, else the CPU. ``device_map`` (e.g. "auto") spreads a
    model too large for one GPU over several devices with accelerate; then ``device`` is ignored.
    ``trust_remote_code`` stays off unless asked: remote code runs with your permissions.
    Works with transformers 4.52+ and 5.x.

    A hub name is fetched when the hub answers (``_hub_unreachable``); without a network (or with
    HF_HUB_OFFLINE=1) it is read from the local Hugging Face cache only, so a model downloaded
    before still loads and a missing one fails at once with one line instead of retrying.
    ``LoadedModel.name`` is ``public_name(name_or_path)``.

    Raises:
        ModelLoadError: an unusable device or device map (before anything is loaded), a missing
            folder, a folder without config.json or tokenizer, a hub name that cannot be fetched
            (no network and not in the cache, or not on the hub), a model that is not a causal LM,
            or a family with no ArchSpec. The message is one line.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    looks_local = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if looks_local and not path.exists():
        raise ModelLoadError(f"no model folder at {path}: check the path, or give a hub name such as 'gpt2'")
    if looks_local and not (path / "config.json").exists():
        raise ModelLoadError(f"{path} has no config.json: point at a Hugging Face model folder")
    offline = None if looks_local else _hub_unreachable()
    if offline and not _in_hub_cache(name):  # say so before the seconds torch and transformers take to import
        raise ModelLoadError(_not_reachable(name, offline))
    if device_map is None:
        target = resolve_device(device)  # an unusable device fails here, before anything is loaded
    else:
        _check_device_map(device_map)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    hub: dict = {"trust_remote_code": trust_remote_code, **({"local_files_only": True} if offline else {})}
    try:
        config = AutoConfig.from_pretrained(name, **hub)
    except OSError as exc:
        if offline:
            raise ModelLoadError(_not_reachable(name, offline)) from None
        raise ModelLoadError(f"could not load the model config for {name!r}: {_one_line(exc)}. Give a local "
                             "folder, or a hub name that exists") from exc
    try:
        tok = AutoTokenizer.from_pretrained(name, **hub)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{name!r} has no usable tokenizer ({_one_line(exc)}); the folder needs tokenizer "
                             "files (tokenizer.json or vocab files)") from exc
    kwargs: dict = dict(hub)
    if dtype is not None:
        kwargs[_dtype_kwarg()] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    # eager attention: the SSS term needs a double backward, which fused kernels may not support
    kwargs["attn_implementation"] = "eager"
    try:
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except ValueError as exc:
        raise ModelLoadError(f"{name!r} ({config.model_type}) is not a causal language model: "
                             f"{_one_line(exc)}") from exc
    except OSError as exc:
        raise ModelLoadError(f"could not load the weights of {name!r}: {_one_line(exc)}") from exc
    if device_map is None:
        model.to(target)
    model.eval()
    model.requires_grad_(False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    log.info("loaded %s (%s) on %s", name, config.model_type, next(model.parameters()).device)
    return LoadedModel(model=model, tok=tok, spec=arch_spec(model), name=public_name(name))


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading weights" progress bar from transformers while a model loads (a load takes well under a
    second for the shipped model; the bar cluttered every CLI run and the app server's log)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (transformers' messages span several)."""
    return " ".join(str(exc).split())
