"""The GPU path, measured: one prepared check for the day a GPU is lent (issue 28).

On CUDA it builds a GPT-2 XL-shaped model (48 blocks, d_model 1600, 25 heads, 1,024 positions,
GPT-2's 50,257-row vocabulary) with random weights -- speed does not depend on the weights'
values -- in float32 and then bfloat16 (the same weights cast), with the shipped tokenizer (its
1,024 ids use the first rows of the embedding). On it, every registered editor edits a few world
requests, and the script checks and times:

- that each edit changes the weights it should (FT-L / ROME: one MLP output projection, MEMIT: one
  per layer of its config, MEND: MLP output projections; SERAC: no new weights, an edit memory
  whose routed output must move), that reverting is bit for bit (the edited parameters against ``edit.base`` after every
  edit, the whole state against a CPU snapshot after each editor), and that nothing is NaN;
- seconds per edit (median of the timed edits, after one untimed warm-up edit that also computes
  ROME's / MEMIT's key statistics) and peak GPU memory (``torch.cuda.max_memory_allocated``);
- the SSS double backward (lambda_max with ``create_graph=True``, backward to a weight) in both dtypes;
- lambda_max for one batch of 256 (prompt, target) pairs; a MEMIT batch of 100 requests (float32);
- for each editor, whether its bfloat16 edit gives the same top-1 next token after the edited
  prompt as its float32 edit.

MEND and SERAC need a checkpoint trained for the model's shape: the script trains one in a few
steps (``steps=3``: a checkpoint that times the editor, not one that edits well) in float32 and
uses it in both dtypes. ROME and MEMIT need key statistics: on random weights there is no text the
model knows, so they are computed from a few hundred world sentences (``--mom2-samples``) and
the table says so.

On a machine without CUDA, or with ``--tiny``, the same code runs on a tiny shape (2 blocks,
d_model 64) on the CPU in seconds; the targets are judged only on the XL shape on CUDA.

    python benchmarks/gpu_check.py --json gpu_check.json        # XL shape on CUDA, < 6 min
    python benchmarks/gpu_check.py --tiny                       # tiny shape, seconds
    python benchmarks/gpu_check.py --only rome,memit-100 --budget 120

Every check runs in its own try/except: an error is written in that row and the script goes on.
Once ``--budget`` seconds have passed, the remaining rows are skipped with that reason.
"""

from __future__ import annotations

import argparse
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

XL = {"n_layer": 48, "n_embd": 1600, "n_head": 25, "n_positions": 1024, "vocab_size": 50257}
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128, "vocab_size": None}  # None: len(tok)
DTYPES = ("float32", "bfloat16")
# editor settings on the XL shape: the layers the papers use for GPT-2 XL (ROME 17, MEMIT 13-17)
XL_SETTINGS = {"rome": {"layer": 17}, "memit": {"layers": (13, 14, 15, 16, 17)}}
TARGETS = {  # row name -> (target text, test on the row)
    "ft-l+sss": ("<= 1 s per edit", lambda r: r.seconds is not None and r.seconds <= 1.0),
    "rome": ("<= 2 s per edit (key statistics cached)", lambda r: r.seconds is not None and r.seconds <= 2.0),
    "memit-100": ("<= 30 s per batch of 100", lambda r: r.seconds is not None and r.seconds <= 30.0),
    "bf16-vs-fp32": (">= 95% same top-1, no NaN", lambda r: r.extra.get("match_fraction") is not None
                     and r.extra["match_fraction"] >= 0.95 and r.nan_free is True),
}
SIDE_BY_SIDE = ("ft-l", "ft-l+sss", "rome")  # the editors that train independent edits side by side (edit_each)
SIDE_BY_SIDE_N = 16  # edits of the batched-vs-single row


@dataclass
class Row:
    """One line of the table: what was measured, or why it was not."""

    name: str
    dtype: str
    status: str = "ok"  # "ok", "error" or "skipped"
    seconds: float | None = None  # seconds per edit (per call for lambda_max / the MEMIT batch)
    n: int | None = None  # timed calls behind ``seconds``
    peak_gb: float | None = None  # torch.cuda.max_memory_allocated during the row (CUDA only)
    weights_ok: bool | None = None  # the edit changed exactly what it should
    revert_exact: bool | None = None  # every parameter bit-identical after revert
    nan_free: bool | None = None
    target: str = ""
    met: str = ""  # "yes", "no", or why it is not judged
    note: str = ""  # what was done differently, or the error / skip reason
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The row as plain JSON-ready values."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Check:
    """The run's state: the model, its tokenizer, the settings, the rows and the time budget."""

    def __init__(self, args: argparse.Namespace):
        """Pick the shape and device from ``args``; nothing is built yet."""
        import torch
        self.args = args
        self.cuda = torch.cuda.is_available() and not args.tiny
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.shape = dict(XL if self.cuda else TINY)
        self.shape_name = "gpt2-xl-shape" if self.cuda else "tiny"
        self.judged = self.cuda  # targets only mean something on the XL shape on CUDA
        if args.budget is None:
            args.budget = 300.0 if self.cuda else 120.0
        self.rows: list[Row] = []
        self.start = time.perf_counter()
        self.only = set(args.only.split(",")) if args.only else None
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check-"))
        self.top1: dict[tuple[str, str], list[int]] = {}  # (editor, dtype) -> top-1 per request
        self.checkpoints: dict[str, str] = {}  # trained editor -> checkpoint folder (made in float32)
        self.lm = None
        self.current_dtype: str | None = None
        self.snapshots: dict[str, dict] = {}  # dtype -> CPU copy of the whole state (revert checks)

    # ---------------------------------------------------------------- helpers
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.start

    def sync(self) -> None:
        """Wait for the GPU, so wall times include its work."""
        if self.cuda:
            import torch
            torch.cuda.synchronize()

    def wanted_any_extra(self) -> bool:
        """Whether ``--only`` selects a row that is not an editor's (they run with the first phases)."""
        return any(self.wanted(n) for n in ("sss-double-backward", "lambda-256", "memit-100", "batched-vs-single"))

    def wanted(self, name: str) -> bool:
        """Whether ``--only`` selects the row ``name``."""
        return self.only is None or name in self.only

    def run_row(self, name: str, dtype: str, fn: Callable[[Row], None]) -> Row:
        """Run one check into a new row: skipped past the budget, its error recorded, never raised."""
        import torch
        row = Row(name, dtype)
        self.rows.append(row)
        if self.elapsed() > self.args.budget:
            row.status, row.note = "skipped", f"time budget of {self.args.budget:.0f} s spent before this row"
        else:
            if self.cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                fn(row)
            except Exception as exc:  # the check goes on with the next row
                row.status = "error"
                row.note = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
                row.extra["traceback"] = traceback.format_exc(limit=6)
            finally:
                if self.cuda:
                    row.peak_gb = torch.cuda.max_memory_allocated() / 2**30
        self.judge(row)
        self.progress(row)
        return row

    def judge(self, row: Row) -> None:
        """Set the row's target and whether it is met (judged only on the XL shape on CUDA)."""
        if row.name not in TARGETS or (row.name != "bf16-vs-fp32" and row.dtype != "float32"):
            return
        row.target = TARGETS[row.name][0]
        if not self.judged:
            row.met = "not judged (tiny shape)"
        elif row.status == "skipped":
            row.met = "not measured"
        elif row.status != "ok":
            row.met = "no"
        else:
            row.met = "yes" if TARGETS[row.name][1](row) else "no"

    def progress(self, row: Row) -> None:
        """One line on stderr per finished row, and the JSON so far (a cut-off run still leaves it)."""
        print(f"[{self.elapsed():6.1f} s] {row.name} {row.dtype}: {row.status} "
              f"{_cell(row.seconds)} s {row.note[:120]}", file=sys.stderr, flush=True)
        if self.args.json:
            from sss_core.jsonio import to_json
            Path(self.args.json).write_text(to_json(self.report(), indent=True) + "\n", encoding="utf-8")

    # ---------------------------------------------------------------- model
    def build(self, dtype: str) -> str:
        """The model of the chosen shape in ``dtype``; returns what was done.

        float32 is built once with seed 0 (later: restored from its CPU snapshot, bit for bit);
        bfloat16 is always that float32 model cast.
        """
        import torch
        from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel
        from sss_core.models import LoadedModel, arch_spec
        from sss_core.resources import default_model_path
        if self.lm is not None:
            if self.current_dtype == "bfloat16":  # back to the float32 weights, bit for bit
                self.lm.model.to(torch.float32)
                self.lm.model.load_state_dict(self.snapshots["float32"])
            self.current_dtype = dtype
            if dtype == "bfloat16":
                self.lm.model.to(torch.bfloat16)
                return "cast from the float32 model"
            return "float32 weights restored from the snapshot"
        tok = AutoTokenizer.from_pretrained(default_model_path())
        shape = {**self.shape, "vocab_size": self.shape["vocab_size"] or len(tok)}
        config = GPT2Config(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id)
        config._attn_implementation = "eager"  # second derivatives (the SSS term) need eager attention
        torch.manual_seed(0)
        with torch.device(self.device):
            model = GPT2LMHeadModel(config)
        model = model.eval().requires_grad_(False)
        self.lm = LoadedModel(model=model, tok=tok, spec=arch_spec(model), name=f"random-{self.shape_name}")
        self.current_dtype = "float32"
        if dtype == "bfloat16":
            return self.build("bfloat16")
        return "built"

    def build_row(self, dtype: str) -> Callable[[Row], None]:
        """Build (or cast) the model in ``dtype`` and snapshot it; the row's seconds are the build's."""
        def check(row: Row) -> None:
            start = time.perf_counter()
            how = self.build(dtype)
            self.sync()
            row.seconds, row.n = time.perf_counter() - start, 1
            if dtype not in self.snapshots:
                self.snapshots[dtype] = {k: v.detach().to("cpu", copy=True)
                                         for k, v in self.lm.model.state_dict().items()}
                how += "; bit-exact CPU snapshot taken for the revert checks"
            elif not self.state_unchanged():
                raise RuntimeError(f"the {dtype} model differs from its snapshot after switching dtype")
            n_params = sum(p.numel() for p in self.lm.model.parameters())
            row.note = f"{n_params / 1e6:.1f} M parameters, random weights (seed 0); {how}"
        return check

    def state_unchanged(self) -> bool:
        """Whether every tensor of the model equals the snapshot in every bit."""
        saved = self.snapshots[self.current_dtype]
        return all(v.detach().cpu().equal(saved[k]) for k, v in self.lm.model.state_dict().items())

    def requests(self, n: int):
        """The first ``n`` world test requests."""
        from sss_core.evaluation.presets import presets
        return [c.request for c in presets("test", n)]

    # ---------------------------------------------------------------- editor settings
    def mom2_text(self) -> str:
        """A text file of world sentences for ROME's / MEMIT's key statistics (written once)."""
        path = self.tmp / "mom2.txt"
        if not path.exists():
            from sss_core.world.generate import build_world
            path.write_text("\n".join(build_world(0).training_sentences()[:self.args.mom2_samples]) + "\n")
        return str(path)

    def settings(self, name: str) -> tuple[dict, str]:
        """(config overrides, note) for editor ``name`` on this shape; trains MEND / SERAC when needed."""
        from sss_core.editors import EDITORS, train_config
        from sss_core.world.records import world_cases
        spec = EDITORS[name]
        fields = set(spec.config_cls.__dataclass_fields__)
        out, notes = {}, []
        if self.shape_name != "tiny":
            out.update({k: v for k, v in XL_SETTINGS.get(name.split("+")[0], {}).items() if k in fields})
        if "mom2_text" in fields:
            out.update(mom2_text=self.mom2_text(), mom2_n_samples=self.args.mom2_samples)
            if "stats_dir" in fields:
                out["stats_dir"] = str(self.tmp / "stats")
            notes.append(f"key statistics from {self.args.mom2_samples} world sentences (random weights: "
                         "no corpus the model knows), computed in the warm-up edit")
        if spec.trainable:
            if name not in self.checkpoints:
                folder = self.tmp / name.replace("+", "-")
                quick = {k: v for k, v in {"steps": 3, "batch_size": 2, "norm_batches": 2}.items()
                         if k in spec.train_config_cls.__dataclass_fields__}
                start = time.perf_counter()
                spec.trainer(self.lm, world_cases(split="train"), folder, train_config(name, **quick), progress=False)
                self.sync()
                self.checkpoints[name] = str(folder)
                notes.append(f"checkpoint trained here in {time.perf_counter() - start:.1f} s "
                             f"({quick['steps']} steps: times the editor, does not edit well)")
            else:
                notes.append("float32 checkpoint reused")
            out["checkpoint"] = self.checkpoints[name]
        if out.get("layer") is not None or out.get("layers") is not None:
            notes.append("layers " + str(out.get("layer", out.get("layers"))))
        return out, "; ".join(notes)

    def expected_params(self, name: str, editor) -> set[str] | None:
        """The parameters an edit of ``editor`` must change; None for SERAC (no base weight changes)."""
        lm, cfg = self.lm, editor.config
        if name.startswith("serac"):
            return None
        if hasattr(cfg, "layers"):
            layers = cfg.layers if isinstance(cfg.layers, (tuple, list)) else (cfg.layers,)
        elif hasattr(cfg, "layer"):
            layers = (cfg.layer,)
        else:  # MEND: its checkpoint names the layers; any MLP output projection is accepted
            layers = range(lm.spec.n_layers(lm.model))
        n = lm.spec.n_layers(lm.model)
        return {lm.spec.mlp_out_name(lm.model, i % n) + ".weight" for i in layers}

    # ---------------------------------------------------------------- checks
    def edit_row(self, name: str, dtype: str) -> Callable[[Row], None]:
        """The check of editor ``name``: a warm-up edit, then timed edits, each checked."""
        def check(row: Row) -> None:
            import torch
            from sss_core.editors import make_editor
            from sss_core.evaluation.metrics import teacher_forced
            lm = self.lm
            settings, row.note = self.settings(name)
            editor = make_editor(name, **settings)
            reqs = self.requests(self.args.edits + 1)
            params = dict(lm.model.named_parameters())
            expected = self.expected_params(name, editor)
            times, weights_ok, revert_ok, finite, top1, reached = [], True, True, True, [], 0
            for i, req in enumerate(reqs):
                before = self.top1_logits(lm.model, req.prompt)
                self.sync()
                start = time.perf_counter()
                edit = editor.edit(lm.model, lm.tok, [req])
                self.sync()
                if i > 0:  # the first edit is the warm-up (CUDA kernels, key statistics)
                    times.append(time.perf_counter() - start)
                new = getattr(edit, "new", None)
                with edit:
                    after = self.top1_logits(edit.model, req.prompt)
                    if new is not None:
                        finite &= all(bool(torch.isfinite(v).all()) for v in new.values())
                        changed = {n for n in new if not torch.equal(new[n], edit.base[n])}
                        weights_ok &= bool(changed) and (changed <= expected if name.startswith("mend")
                                                         else changed == expected)
                        weights_ok &= all(torch.equal(params[n], new[n]) for n in new)
                    else:  # SERAC: the base weights stay, the routed output moves
                        weights_ok &= not torch.equal(before, after)
                    pred = teacher_forced(edit.model, lm.tok, [req.prompt], [req.target_new])[0]
                finite &= bool(torch.isfinite(after).all())
                top1.append(pred.argmax_ids[0])  # the top-1 next token after the edited prompt
                reached += pred.argmax_ids[0] == pred.target_ids[0]
                if new is not None:
                    revert_ok &= all(torch.equal(params[n], edit.base[n]) for n in new)
            revert_ok &= self.state_unchanged()
            row.seconds, row.n = statistics.median(times), len(times)
            row.weights_ok, row.revert_exact, row.nan_free = weights_ok, revert_ok, finite
            row.extra["edited"] = sorted(new) if new is not None else "none (edit memory)"
            row.extra["target_top1"] = f"{reached}/{len(reqs)}"
            row.note = "; ".join(filter(None, [f"target's first token top-1 after {reached}/{len(reqs)} edits",
                                               row.note]))
            self.top1[(name, dtype)] = top1
            if not (weights_ok and revert_ok and finite):
                row.status = "error"
                what = "the routed output did not move" if new is None else "edited weights"
                row.note = "; ".join(filter(None, [row.note, f"check failed: {what}" if not weights_ok else "",
                                                   "check failed: revert" if not revert_ok else "",
                                                   "check failed: NaN" if not finite else ""]))
        return check

    def top1_logits(self, model, prompt: str):
        """The next-token logits after ``prompt`` (float32)."""
        import torch
        ids = self.lm.tok(prompt, return_tensors="pt")["input_ids"].to(self.device)
        with torch.no_grad():
            return model(input_ids=ids).logits[0, -1].float()

    def world_pairs(self, n: int) -> tuple[list[str], list[str]]:
        """``n`` (prompt, object) pairs of world facts."""
        from sss_core.evaluation.presets import default_world
        facts = default_world().facts[:n]
        return [f.prompt() for f in facts], [f.object for f in facts]

    def lambda_row(self, row: Row) -> None:
        """lambda_max of one batch of 256 pairs: median seconds per call."""
        from sss_core.sss import lambda_max
        prompts, targets = self.world_pairs(256)
        lambda_max(self.lm.model, self.lm.tok, prompts[:8], targets[:8])  # warm-up
        times = []
        for _ in range(self.args.repeat):
            self.sync()
            start = time.perf_counter()
            lam = lambda_max(self.lm.model, self.lm.tok, prompts, targets, batch_size=256)
            self.sync()
            times.append(time.perf_counter() - start)
        row.seconds, row.n = statistics.median(times), len(times)
        row.nan_free = bool(lam.isfinite().all())
        row.note = (f"one batch of {len(prompts)} pairs, seconds per call; "
                    f"mean lambda_max {lam.float().mean().item():.3g}")

    def sss_row(self, row: Row) -> None:
        """The SSS double backward: d lambda_max / d (an MLP output weight) is finite."""
        import torch
        from sss_core.sss import lambda_max
        lm = self.lm
        w = lm.spec.mlp_out_module(lm.model, 0).weight
        prompts, targets = self.world_pairs(4)
        lambda_max(lm.model, lm.tok, prompts, targets)  # warm-up
        w.requires_grad_(True)
        try:
            self.sync()
            start = time.perf_counter()
            lam = lambda_max(lm.model, lm.tok, prompts, targets, create_graph=True)
            lam.sum().backward()
            self.sync()
            row.seconds, row.n = time.perf_counter() - start, 1
            row.nan_free = bool(lam.isfinite().all()) and bool(torch.isfinite(w.grad).all())
            nonzero = bool(w.grad.abs().sum() > 0)
            row.note = (f"4 pairs, grad of lambda_max to MLP-out weight of block 0: "
                        f"norm {w.grad.float().norm().item():.3g}")
            if not (row.nan_free and nonzero):
                row.status = "error"
                row.note += "; check failed: " + ("NaN" if not row.nan_free else "zero gradient")
        finally:
            w.grad = None
            w.requires_grad_(False)

    def memit_batch_row(self, n: int) -> Callable[[Row], None]:
        """One MEMIT edit of ``n`` requests (after the single-edit row computed its key statistics)."""
        def check(row: Row) -> None:
            import torch
            from sss_core.editors import make_editor
            settings, _ = self.settings("memit")
            editor = make_editor("memit", **settings)
            reqs = self.requests(n)
            params = dict(self.lm.model.named_parameters())
            editor.edit(self.lm.model, self.lm.tok, reqs[:1])  # warm-up: key statistics computed or loaded
            self.sync()
            start = time.perf_counter()
            edit = editor.edit(self.lm.model, self.lm.tok, reqs)
            self.sync()
            row.seconds, row.n = time.perf_counter() - start, 1
            with edit:
                row.weights_ok = all(torch.equal(params[k], v) for k, v in edit.new.items())
            row.nan_free = all(bool(torch.isfinite(v).all()) for v in edit.new.values())
            row.revert_exact = self.state_unchanged()
            row.note = (f"{len(reqs)} requests in one edit, seconds per batch (key statistics computed in an "
                        f"untimed one-request warm-up edit) from {self.args.mom2_samples} world sentences"
                        + (f"; layers {settings['layers']}" if "layers" in settings else ""))
            if not (row.weights_ok and row.nan_free and row.revert_exact):
                row.status = "error"
                row.note += "; check failed"
        return check

    def batched_row(self, row: Row) -> None:
        """SIDE_BY_SIDE_N independent edits side by side (``edit_each``) against one at a time, per editor:
        seconds per edit each way, the speed-up, and how far the edits agree (same step counts, the
        relative difference of the update norms). ``seconds`` is FT-L's side-by-side time per edit."""
        import torch
        from sss_core.editors import make_editor
        model, tok = self.lm.model, self.lm.tok
        reqs = self.requests(SIDE_BY_SIDE_N)
        finite = True
        for name in SIDE_BY_SIDE:
            settings, _ = self.settings(name)
            editor = make_editor(name, **settings)
            editor.edit(model, tok, reqs[:1])  # warm-up: key statistics, first-call costs
            self.sync()
            start = time.perf_counter()
            one = [editor.edit(model, tok, [r]) for r in reqs]
            self.sync()
            t_one = (time.perf_counter() - start) / len(reqs)
            start = time.perf_counter()
            many = editor.edit_each(model, tok, reqs)
            self.sync()
            t_many = (time.perf_counter() - start) / len(reqs)
            failed = [m for m in many if not hasattr(m, "new")]
            pairs = [(a, b) for a, b in zip(one, many) if hasattr(b, "new")]
            finite &= all(bool(torch.isfinite(v).all()) for _, b in pairs for v in b.new.values())
            rel = max((abs(a.delta_norms()[k] - b.delta_norms()[k]) / max(a.delta_norms()[k], 1e-12)
                       for a, b in pairs for k in a.new), default=float("nan"))
            row.extra[name] = {"one_at_a_time_s": round(t_one, 4), "side_by_side_s": round(t_many, 4),
                               "speedup": round(t_one / t_many, 2), "failed": len(failed),
                               "same_steps": sum(a.info.get("steps") == b.info.get("steps") for a, b in pairs),
                               "max_rel_delta_norm_diff": rel}
        row.seconds, row.n = row.extra["ft-l"]["side_by_side_s"], len(reqs)
        row.nan_free, row.revert_exact = finite, self.state_unchanged()
        row.note = (f"{len(reqs)} edits: " + ", ".join(f"{k} {v['speedup']}x ({v['same_steps']}/{len(reqs)} same steps)"
                                                     for k, v in row.extra.items()))
        if not (finite and row.revert_exact) or any(v["failed"] for v in row.extra.values()):
            row.status = "error"
            row.note += "; check failed"

    def agreement_row(self, row: Row) -> None:
        """bfloat16 against float32: the same top-1 next token after the edited prompt, per request."""
        pairs = [(name, a, self.top1.get((name, "bfloat16"))) for (name, d), a in self.top1.items()
                 if d == "float32" and (name, "bfloat16") in self.top1]
        if not pairs:
            row.status, row.note = "skipped", "no editor ran in both dtypes"
            return
        same = {name: sum(x == y for x, y in zip(a, b)) for name, a, b in pairs}
        total = sum(len(a) for _, a, _ in pairs)
        row.extra["per_editor"] = {name: f"{same[name]}/{len(a)}" for name, a, _ in pairs}
        row.extra["match_fraction"] = sum(same.values()) / total
        bf16_rows = [r for r in self.rows if r.dtype == "bfloat16" and r.name in same]
        row.nan_free = all(r.nan_free is True for r in bf16_rows)
        row.n = total
        row.note = (f"{sum(same.values())}/{total} requests same top-1 ("
                    + ", ".join(f"{k} {v}" for k, v in row.extra["per_editor"].items()) + ")")

    # ---------------------------------------------------------------- the run
    def run(self) -> dict:
        """Every row, in order of importance for a short GPU session; returns the report."""
        from sss_core.editors import EDITORS
        plain = [n for n in EDITORS if not EDITORS[n].trainable]
        trained = [n for n in EDITORS if EDITORS[n].trainable]
        # the targets first (both dtypes), then MEND / SERAC, which train a checkpoint first
        phases = [(dtype, plain, True) for dtype in DTYPES] + [(dtype, trained, False) for dtype in DTYPES]
        for dtype, editors, first in phases:
            if not any(self.wanted(n) for n in editors) and not (first and self.wanted_any_extra()):
                continue
            built = self.run_row("build", dtype, self.build_row(dtype))
            if built.status != "ok":
                continue
            if first and self.wanted("sss-double-backward"):
                self.run_row("sss-double-backward", dtype, self.sss_row)
            if first and self.wanted("lambda-256"):
                self.run_row("lambda-256", dtype, self.lambda_row)
            for name in editors:
                if self.wanted(name):
                    self.run_row(name, dtype, self.edit_row(name, dtype))
            if first and dtype == "float32" and self.wanted("memit-100"):
                self.run_row("memit-100", dtype, self.memit_batch_row(self.args.memit_batch))
            if first and dtype == "float32" and self.wanted("batched-vs-single"):
                self.run_row("batched-vs-single", dtype, self.batched_row)
        if self.wanted("bf16-vs-fp32"):
            self.run_row("bf16-vs-fp32", "bfloat16", self.agreement_row)
        return self.report()

    def report(self) -> dict:
        """The header and the rows as one JSON-ready dict."""
        import torch
        import transformers
        device = (torch.cuda.get_device_name(0) if self.cuda
                  else f"CPU ({platform.processor() or platform.machine()})")
        config = {**self.shape, "vocab_size": self.shape["vocab_size"] or (len(self.lm.tok) if self.lm else None)}
        return {
            "header": {
                "device": device,
                "torch": torch.__version__, "cuda": torch.version.cuda if self.cuda else None,
                "transformers": transformers.__version__, "python": platform.python_version(),
                "shape": self.shape_name, "config": config,
                "weights": "random (seed 0); bfloat16 is the float32 model cast",
                "timed_edits_per_editor": self.args.edits, "targets_judged": self.judged,
                "total_seconds": round(self.elapsed(), 1), "budget_seconds": self.args.budget,
            },
            "rows": [r.as_dict() for r in self.rows],
        }


def _cell(value: Any) -> str:
    """A table cell: numbers with 3 significant digits, booleans as yes/no, None as blank."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def format_table(report: dict) -> str:
    """The report as a header and a Markdown table."""
    h = report["header"]
    lines = [f"device: {h['device']} | torch {h['torch']} | CUDA {h['cuda'] or '-'} | transformers {h['transformers']}"
             f" | python {h['python']}",
             f"shape: {h['shape']} {h['config']} | {h['weights']} | "
             f"{h['total_seconds']} s of {h['budget_seconds']:.0f} s budget",
             "",
             "| check | dtype | status | s | n | peak GB | weights ok | revert exact | no NaN | target | met | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["rows"]:
        lines.append("| " + " | ".join(_cell(r[k]) for k in ("name", "dtype", "status", "seconds", "n", "peak_gb",
                                                              "weights_ok", "revert_exact", "nan_free", "target",
                                                              "met", "note")) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write the report as strict JSON (NaN as null) to this path")
    p.add_argument("--tiny", action="store_true", help="the tiny shape on the CPU, even where CUDA exists")
    p.add_argument("--only", help="comma-separated rows: editor names, memit-100, lambda-256, "
                                  "sss-double-backward, bf16-vs-fp32, batched-vs-single")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds after which the remaining rows are skipped (default 300 on CUDA, 120 tiny)")
    p.add_argument("--edits", type=int, default=3, help="timed edits per editor and dtype, after one warm-up")
    p.add_argument("--repeat", type=int, default=3, help="timed lambda_max calls")
    p.add_argument("--memit-batch", type=int, default=100, help="requests in the MEMIT batch row")
    p.add_argument("--mom2-samples", type=int, default=300, help="world sentences for the key statistics")
    args = p.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the check, print the table, write the JSON; returns the report."""
    import torch
    args = parse_args(argv)
    check = Check(args)
    try:
        report = check.run()
    finally:
        shutil.rmtree(check.tmp, ignore_errors=True)  # key statistics and checkpoints made for this run
    print(format_table(report), flush=True)
    if args.json:
        from sss_core.jsonio import to_json
        Path(args.json).write_text(to_json(report, indent=True) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
