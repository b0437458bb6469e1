"""At which layer does lambda_max best predict an edit's damage? (issue 26, item 5)

For N world edits per editor on the shipped model: lambda_max of the request (prompt + new target) read at
every hidden state of the unedited model (``sss.lambda_max_by_layer``: the input embeddings, each block's
output, the last hidden states after the final norm, the paper's choice), and two damages of the edit:
world damage (the share of the world's facts that should not change whose top answer changed,
``world_locality``) and the sampled locality drop (1 - locality over the case's neighbour probes). Each
(editor, damage, layer) cell is the Spearman rho of lambda_max against the damage with a 95% CI and p from
one cluster bootstrap over the edit prompts (``hypothesis.spearman_ci``), plain and partial given the new
target's NLL (lambda_max against the new target is a gradient of that NLL, so a surprising target raises both
lambda_max and the size of the edit); the paper predicts rho > 0 (a less sparse neighbourhood, a larger
lambda_max, more damage). The p-values of the whole table are adjusted together (Benjamini-Hochberg,
``hypothesis.adjust``) and the verdict follows the adjusted p. The layers' lambda_max values are strongly
correlated with each other, so a layer's rho being higher than another's is not itself tested here.

Writes OUT/edits.csv (one row per edit), OUT/table.csv, OUT/table.md and OUT/layers.html (rho against the
layer with its CI, per editor and damage); prints the table.

    OMP_NUM_THREADS=1 python tools/lambda_layer_table.py --editors ft-l,rome,memit --n 60 --out docs/results/lambda-layer
    python tools/lambda_layer_table.py --edits docs/results/lambda-layer/edits.csv --out docs/results/lambda-layer
        # the table again from stored edits (no edit made; the target NLL measured when the file lacks it)
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from sss_core.editors import make_editor
from sss_core.evaluation.datasets import load_cases
from sss_core.evaluation.hypothesis import Correlation, adjust, spearman_ci, target_nll_of
from sss_core.evaluation.presets import default_world
from sss_core.evaluation.runners import single_edits
from sss_core.models import load_model
from sss_core.sss import lambda_max_by_layer

DAMAGES = {"world_damage": "world damage (1 - world locality)", "locality_drop": "sampled locality drop (1 - locality)"}


def edit_rows(lm, editor: str, cases, lam: np.ndarray) -> list[dict]:
    """One row per edit: the case, the two damages and lambda_max at every layer (from ``lam``: (cases, layers))."""
    rows = []
    world = default_world().facts
    for i, out in enumerate(single_edits(lm.model, lm.tok, make_editor(editor), cases, seed=0, world=world)):
        if out.result is None:
            print(f"{editor} {out.key.case_id}: {out.error}", file=sys.stderr)
            continue
        wl = out.world["world_locality"]
        row = {"editor": editor, "case_id": out.key.case_id, "prompt": out.case.request.prompt,
               "target_new": out.case.request.target_new,
               "world_damage": np.nan if wl is None else 1 - wl,
               "locality_drop": 1 - out.result.metrics["locality"]}
        row.update({f"lambda_layer{j}": float(v) for j, v in enumerate(lam[i])})
        rows.append(row)
    return rows


def table(edits: pd.DataFrame, layers: int, n_boot: int) -> pd.DataFrame:
    """Spearman rho of lambda_max at each layer against each damage, plain and partial given the target NLL,
    per editor; BH-adjusted over the whole table."""
    corrs = []
    for editor, group in edits.groupby("editor", sort=False):
        clusters = group["prompt"].to_numpy()
        nll = group["target_nll"].to_numpy(float)
        for damage in DAMAGES:
            for control in (None, "target_nll"):
                for layer in range(layers):
                    x, y = group[f"lambda_layer{layer}"].to_numpy(float), group[damage].to_numpy(float)
                    rho, lo, hi, p = spearman_ci(x, y, clusters, nll if control else None, n_boot=n_boot)
                    corrs.append(Correlation(editor, f"lambda_max at layer {layer}", damage, control, rho, lo, hi,
                                             p, int(np.isfinite(x + y).sum()), len(set(clusters)), 1))
    rows = []
    for c in adjust(corrs):
        rows.append({"editor": c.editor, "damage": c.y, "given": c.control or "", "layer": int(c.x.rsplit(" ", 1)[1]),
                     "rho": round(c.rho, 3), "ci_lo": round(c.lo, 3), "ci_hi": round(c.hi, 3), "p": round(c.p, 4),
                     "p_bh": round(c.p_adjusted, 4), "edits": c.points, "verdict": c.verdict, "tests": c.tests})
    return pd.DataFrame(rows)


def figure(tab: pd.DataFrame) -> go.Figure:
    """rho against the layer, with its 95% CI, one line per editor and damage."""
    fig = go.Figure()
    for (editor, damage), g in tab[tab["given"] == ""].groupby(["editor", "damage"], sort=False):
        fig.add_trace(go.Scatter(x=g["layer"], y=g["rho"], mode="lines+markers", name=f"{editor}: {damage}",
                                 error_y={"type": "data", "symmetric": False, "array": g["ci_hi"] - g["rho"],
                                          "arrayminus": g["rho"] - g["ci_lo"]}))
    fig.add_hline(y=0, line_dash="dot")
    fig.update_layout(title="Spearman rho of lambda_max (read at each layer) against the edit's damage",
                      xaxis_title="layer (0 = input embeddings, last = after the final norm)",
                      yaxis_title="rho (95% cluster-bootstrap CI)", width=1100, height=560)
    return fig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--editors", default="ft-l,rome,memit")
    p.add_argument("--n", type=int, default=60, help="world edits per editor")
    p.add_argument("--seed", type=int, default=0, help="which world cases (load_cases seed)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--edits", type=Path, default=None, help="an edits.csv written before: only make the table")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.time()
    lm = load_model()
    if args.edits is not None:
        edits = pd.read_csv(args.edits)
        n_cases = edits.groupby("editor").size().max()
    else:
        cases = load_cases("world", args.n, args.seed, "auto", 10**8, False)
        n_cases = len(cases)
        lam = lambda_max_by_layer(lm.model, lm.tok, [c.request.prompt for c in cases],
                                  [c.request.target_new for c in cases]).numpy()
        edits = pd.DataFrame([row for e in args.editors.split(",") for row in edit_rows(lm, e, cases, lam)])
    if "target_nll" not in edits:
        edits["target_nll"] = target_nll_of(lm.model, lm.tok, list(edits["prompt"]), list(edits["target_new"]))
    layers = sum(c.startswith("lambda_layer") for c in edits.columns)
    tab = table(edits, layers, args.n_boot)
    args.out.mkdir(parents=True, exist_ok=True)
    edits.to_csv(args.out / "edits.csv", index=False)
    tab.to_csv(args.out / "table.csv", index=False)
    command = "OMP_NUM_THREADS=1 python tools/lambda_layer_table.py " + shlex.join(sys.argv[1:])
    header = (f"command: `{command}`; {n_cases} world edits per editor, model {lm.name}, torch {torch.__version__}, "
              f"Python {platform.python_version()}, {time.time() - start:.0f} s\n\n")
    (args.out / "table.md").write_text(header + tab.to_markdown(index=False) + "\n")
    # plotly.js from the results folder beside it (opens offline); a folder elsewhere embeds it
    shared = args.out.parent / "world" / "plotly.min.js"
    figure(tab).write_html(args.out / "layers.html", include_plotlyjs="../world/plotly.min.js" if shared.exists() else True)
    print(header + tab.to_string(index=False))


if __name__ == "__main__":
    main()
