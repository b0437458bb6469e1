"""Second moment of MLP keys, C = E[k k^T], per (model, layer), estimated from text and cached.

A key is the input of a block's MLP output projection at one token (what ROME and MEMIT call k).
C weights the least-squares problem of both editors: an update should leave ``W k`` unchanged for
the keys the model usually sees. It is estimated once per model and layer from text samples and
cached on disk as safetensors, keyed by the model's name and weight fingerprint, the layer, the
text source and the sample count.

Text sources: ``None`` means the built-in world corpus, allowed for the shipped default model
only (it was trained on it); ``"world"`` forces the world corpus for any model sharing its
tokenizer (tests); a path is a text file with one sample per line; any other iterable of strings
is used as given.

Example:
    >>> C = key_second_moment(lm.model, lm.tok, layer=1)           # (d_ff, d_ff), CPU float32
    >>> C = key_second_moment(model, tok, 17, texts="wiki.txt", n_samples=100_000)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Iterable, Union

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import DataError, RequestError
from ..hooks import TraceDict
from ..locks import model_lock
from ..models import DEFAULT_MODEL, arch_spec
from ..text import right_pad, text_ids
from ._rank_one import forward
from .settings import block_index
from .training import model_fingerprint

log = logging.getLogger(__name__)

TextSource = Union[None, str, os.PathLike, Iterable[str]]
WORLD = "world"
MAX_TOKENS_PER_SAMPLE = 256  # longer samples are truncated; keys far into a text add little


def default_cache_dir() -> Path:
    """``$SSS_CACHE_DIR`` if set, else ``~/.cache/sss_core/stats``."""
    env = os.environ.get("SSS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sss_core" / "stats"


def is_default_model(model: nn.Module) -> bool:
    """True when ``model`` was loaded from the shipped default-model folder."""
    name = getattr(model.config, "_name_or_path", "") or ""
    try:
        return bool(name) and Path(name).expanduser().resolve() == DEFAULT_MODEL.resolve()
    except OSError:
        return False


def _source_label(model: nn.Module, texts: TextSource, n_samples: int) -> tuple[str, object]:
    """(label for the cache key, a zero-argument loader of the sample list)."""
    if texts is None:
        if not is_default_model(model):
            raise RequestError("ROME/MEMIT need text to estimate key statistics for this model: give "
                               "mom2_text, a text file with one sample per line (e.g. Wikipedia "
                               "paragraphs). Only the shipped default model uses the world corpus")
        texts = WORLD
    if isinstance(texts, str) and texts == WORLD:
        def world() -> list[str]:
            """The first ``n_samples`` sentences of the built-in world corpus."""
            from ..world.generate import build_world
            return build_world(0).training_sentences()[:n_samples]
        return "world0", world
    if isinstance(texts, (str, os.PathLike)):
        path = Path(texts).expanduser()
        if not path.is_file():
            raise DataError(f"no text file at {path}: give a file with one text sample per line")
        st = path.stat()
        digest = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:8]

        def from_file() -> list[str]:
            """The first ``n_samples`` non-empty lines of the file."""
            with path.open(encoding="utf-8") as f:
                lines = [line.strip() for line in f]
            return [line for line in lines if line][:n_samples]
        return f"{_safe(path.stem)}-{digest}", from_file
    samples = [s for s in texts if s and s.strip()][:n_samples]
    digest = hashlib.sha256("\n".join(samples).encode()).hexdigest()[:8]
    return f"texts-{digest}", lambda: samples


def _safe(s: str) -> str:
    """``s`` reduced to a short file-name-safe label ("model" when nothing is left)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")[:60] or "model"


def cache_path(model: nn.Module, layer: int, source_label: str, n_samples: int,
               cache_dir: str | os.PathLike | None = None, fingerprint: str | None = None) -> Path:
    """Where the statistics of ``(model, layer, source, n_samples)`` are cached."""
    spec = arch_spec(model)
    name = _safe(Path(getattr(model.config, "_name_or_path", "") or "model").name)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / (f"{name}-{fingerprint or model_fingerprint(model)['weights']}-{source_label}-"
                     f"{spec.mlp_out_name(model, layer)}-n{n_samples}.safetensors")


def _max_tokens(model: nn.Module) -> int:
    """Tokens kept per sample: MAX_TOKENS_PER_SAMPLE, or the model's context length if shorter."""
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    return min(MAX_TOKENS_PER_SAMPLE, limit or MAX_TOKENS_PER_SAMPLE)


@torch.no_grad()
def _compute_moments(model: nn.Module, tok, layers: list[int], samples: list[str],
                     batch_size: int = 32) -> tuple[dict[int, torch.Tensor], int]:
    """E[k k^T] over every token of ``samples`` at each layer -> ({layer: (d_in, d_in)}, n_tokens)."""
    spec = arch_spec(model)
    device = next(model.parameters()).device
    n_layers = spec.n_layers(model)
    names = {layer: spec.mlp_out_name(model, layer) for layer in layers}
    # the deepest module last: the forward pass stops once it has run (later blocks are not needed)
    ordered = [names[layer] for layer in sorted(names, key=lambda layer: layer % n_layers)]
    limit = _max_tokens(model)
    ids = [text_ids(tok, s, max_length=limit, specials=True) for s in samples]  # corpus text: specials as such
    ids = sorted((x for x in ids if x), key=len)  # similar lengths together: little padding
    pad = tok.pad_token_id or 0
    acc: dict[int, torch.Tensor] = {}
    n_tokens = 0
    for start in range(0, len(ids), batch_size):
        rows = ids[start:start + batch_size]
        x, mask = right_pad(rows, pad)
        # right padding needs no padding mask in a causal model: see _rank_one.causal_mask
        # the lock per batch, not for the whole pass: a warm-up computing C in the background lets
        # other sessions edit between its batches (none ever sees a batch read an edited model)
        with model_lock(model), TraceDict(model, ordered, retain_output=False, stop=True) as rec:
            forward(model, x.to(device))
        keep = mask.bool().to(device)
        n_tokens += int(keep.sum())
        for layer, name in names.items():
            k = rec[name].input[keep].float()  # (tokens, d_in)
            kk = (k.T @ k).double().cpu()
            acc[layer] = acc[layer] + kk if layer in acc else kk
    if n_tokens == 0:
        raise DataError("the text samples for key statistics are empty")
    return {layer: (m / n_tokens).float() for layer, m in acc.items()}, n_tokens


def _resolve(model: nn.Module, layers: Iterable[int], texts: TextSource, n_samples: int,
             cache_dir: str | os.PathLike | None):
    """({layer: cache path}, source label, loader of the samples); layers as non-negative indices.

    RequestError for a sample count below 1 or a layer the model does not have.
    """
    if n_samples < 1:
        raise RequestError(f"the number of samples for key statistics must be positive, got {n_samples}")
    resolved = sorted({block_index(model, layer, "layer") for layer in layers})
    label, load_samples = _source_label(model, texts, n_samples)
    with model_lock(model):  # the unedited weights' fingerprint, whoever else uses the model
        fingerprint = model_fingerprint(model)["weights"]
    paths = {layer: cache_path(model, layer, label, n_samples, cache_dir, fingerprint) for layer in resolved}
    return paths, label, load_samples


def moment_paths(model: nn.Module, layers: Iterable[int], texts: TextSource = None, n_samples: int = 10_000,
                 cache_dir: str | os.PathLike | None = None) -> dict[int, Path]:
    """Where ``key_second_moments`` caches each layer's statistics (whether or not they exist yet).

    The path names the model and its weight fingerprint, the text source and the sample count, so
    editors can use it as a key for what they derive from C.
    """
    return _resolve(model, layers, texts, n_samples, cache_dir)[0]


def key_second_moments(model: nn.Module, tok, layers: Iterable[int], texts: TextSource = None,
                       n_samples: int = 10_000, cache_dir: str | os.PathLike | None = None,
                       batch_size: int = 32) -> dict[int, torch.Tensor]:
    """C = E[k k^T] for each of ``layers`` -> {layer: (d_in, d_in) float32 on the CPU}, keyed by
    the non-negative block index (-1 is the last block). RequestError for a layer the model lacks.

    Layers found in the cache are loaded; the missing ones are computed together in one pass over
    the samples and saved (written atomically, so concurrent processes never read half a file).
    """
    paths, label, load_samples = _resolve(model, layers, texts, n_samples, cache_dir)
    out: dict[int, torch.Tensor] = {}
    for layer, path in paths.items():
        if path.is_file():
            out[layer] = load_file(str(path))["mom2"]
            log.debug("key statistics of layer %d loaded from %s", layer, path)
    missing = [layer for layer in paths if layer not in out]
    if missing:
        start = time.perf_counter()
        samples = load_samples()
        moments, n_tokens = _compute_moments(model, tok, missing, samples, batch_size)
        for layer, m in moments.items():
            path = paths[layer]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            save_file({"mom2": m.contiguous()}, str(tmp),
                      metadata={"layer": str(layer), "source": label, "n_samples": str(len(samples)),
                                "n_tokens": str(n_tokens)})
            os.replace(tmp, path)
            out[layer] = m
        log.info("key statistics of layers %s from %d samples (%d tokens) in %.1fs, cached in %s",
                 missing, len(samples), n_tokens, time.perf_counter() - start, paths[missing[0]].parent)
    return out


def key_second_moment(model: nn.Module, tok, layer: int, **kwargs) -> torch.Tensor:
    """C = E[k k^T] of one layer -> (d_in, d_in) float32 on the CPU. See ``key_second_moments``."""
    return next(iter(key_second_moments(model, tok, [layer], **kwargs).values()))
