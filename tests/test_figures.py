"""sss_core.figures: the one renderer of the app, the inspect page and the report (no Streamlit, no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sss_core import figures

ROOT = Path(__file__).resolve().parent.parent


def test_the_figures_module_imports_neither_streamlit_nor_torch():
    code = "import sys, sss_core.figures\nprint('streamlit' in sys.modules, 'torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=120)
    assert res.stdout.split() == ["False", "False"]


def test_every_output_draws_with_the_same_functions():
    import app.figures
    from sss_core import inspect_page
    from sss_core.evaluation import report

    for name in ("projection_figure", "trajectory_figure", "probe_frame", "probe_display", "metrics_comparison_figure",
                 "sweep_figure", "hypothesis_scatter", "lambda_colouring"):
        assert getattr(app.figures, name) is getattr(figures, name), name
    assert inspect_page.draw_projection is figures.projection_figure
    assert inspect_page.trajectory_figure is figures.trajectory_figure
    assert inspect_page.run_probe_frame is figures.probe_frame
    assert report.seeded_sweep_figure is figures.seeded_sweep_figure


def _row(prompt, group, old="Paris", flipped=False, wanted=None):
    return SimpleNamespace(prompt=prompt, group=group, old=old, new="Rome", top1_before=" P", top1_after=" R",
                           p_old_before=0.9, p_old_after=0.1, p_new_before=0.0, p_new_after=0.8, score=1.0,
                           flipped=flipped, wanted_flip=wanted)


def test_probe_frame_adds_the_sparsity_columns_only_when_asked():
    record = SimpleNamespace(lambda_max_before=1e-5, lambda_max_after=0.5, knn_distance_before=0.3,
                             knn_distance_after=0.4)
    run = SimpleNamespace(rows=[_row("a", "rewrite", flipped=True, wanted=True), _row("b", "one_hop", old=None)],
                          sparsity_of=lambda p: record if p == "a" else None)
    plain = figures.probe_frame(run, {"rewrite": "edit prompt"})
    assert list(plain["group"]) == ["edit prompt", "one_hop"] and list(plain["top-1"]) == ["FLIPPED ✓", "same"]
    assert not set(figures.SPARSITY_COLUMNS) & set(plain.columns)
    shown = figures.probe_display(figures.probe_frame(run, sparsity=True))
    assert list(shown.columns[-4:]) == list(figures.SPARSITY_COLUMNS)
    assert shown["lambda_max after"].iloc[0] == 0.5 and np.isnan(shown["lambda_max after"].iloc[1])
    assert list(shown["answer old → new"]) == ["Paris → Rome", "n/a → Rome"]


def test_lambda_colouring_is_a_log_colour_bar_with_ticks_in_the_value():
    records = [SimpleNamespace(lambda_max_before=1e-4, lambda_max_after=1e-2),
               SimpleNamespace(lambda_max_before=0.0, lambda_max_after=1e-3)]
    colour = figures.lambda_colouring(records, "log10 lambda_max (nats²)")
    fig = figures.projection_figure(np.zeros((2, 2)), np.ones((2, 2)), ["rewrite", "neighbour"], ["a", "b"],
                                    colour=colour)
    bar = fig.layout.coloraxis.colorbar
    assert bar.title.text == "log10 lambda_max (nats²)" and "1e-4" in bar.ticktext
    assert sum(len(t.x) for t in fig.data) == 4  # one point per sentence before and after (0 drawn as no value)


def test_trajectory_steps_fill_a_missing_sss_term_with_nan():
    steps = figures.trajectory_steps([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0, "sss": 0.1}])
    fig = figures.trajectory_figure({"run": steps})
    assert np.isnan(steps[0]["sss"]) and [t.name for t in fig.data] == ["run: edit loss", "run: SSS term"]


def test_seeded_sweep_figure_draws_means_and_stds_in_percent():
    index = pd.MultiIndex.from_tuples([("e", 0.0), ("e", 1.0)], names=["editor", "C"])
    stats = pd.DataFrame({"reliability:mean": [1.0, 0.5], "reliability:std": [0.1, None]}, index=index)
    fig = figures.seeded_sweep_figure(stats, {"reliability": "Reliability"}, metrics=("reliability",))
    (trace,) = fig.data
    assert trace.name == "e: Reliability" and list(trace.y) == [100.0, 50.0]
    assert list(trace.error_y.array) == [10.0, 0.0]


def test_the_compact_probe_table_says_where_a_flip_went():
    import pandas as pd

    from sss_core.figures import COMPACT_COLUMNS, probe_compact
    df = pd.DataFrame({"group": ["edit prompt", "paraphrase", "neighbour"], "prompt": ["a", "b", "c"],
                       "top-1": ["FLIPPED ✓", "FLIPPED off target", "same"], "top-1 before": [" Paris", "the", " M"],
                       "top-1 after": [" Rome", "a", " M"], "P(old) after": [0.1, 0.2, 0.9],
                       "P(new) after": [0.8, 0.01, 0.0], "score": [1.0, 0.0, 1.0]})
    shown = probe_compact(df)
    assert list(shown.columns) == list(COMPACT_COLUMNS)
    assert shown["top-1"].tolist() == ["✓ → ' Rome'", "off target → 'a'", "same"]
    assert df["top-1"].tolist() == ["FLIPPED ✓", "FLIPPED off target", "same"]  # the full frame is left as it was


def test_moves_figure_draws_one_bar_per_sentence_in_order_with_its_note():
    from sss_core.figures import GROUP_COLOURS, moves_figure
    fig = moves_figure(["a far one", "a near one", "the middle"], [3.0, 0.5, 1.25],
                       ["rewrite", "neighbour", "rewrite"], ["moved", "kept", "moved too"],
                       labels={"rewrite": "edit question"})
    bars = {y: (x, text, t.name, t.marker.color) for t in fig.data for y, x, text in zip(t.y, t.x, t.text)}
    assert bars == {"a far one": (3.0, "moved", "edit question", GROUP_COLOURS["rewrite"]),
                    "the middle": (1.25, "moved too", "edit question", GROUP_COLOURS["rewrite"]),
                    "a near one": (0.5, "kept", "neighbour", GROUP_COLOURS["neighbour"])}
    assert list(fig.layout.yaxis.categoryarray) == ["the middle", "a near one", "a far one"]  # the first on top
    assert list(fig.layout.yaxis.ticktext) == ["the middle<br><i>moved too</i>", "a near one<br><i>kept</i>",
                                               "a far one<br><i>moved</i>"]  # each note under its sentence
    assert fig.layout.showlegend is False
    with pytest.raises(ValueError, match="expected 2 distances"):
        moves_figure(["a", "b"], [1.0], ["rewrite", "rewrite"], ["", ""])
