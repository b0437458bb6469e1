"""The app's figures: the core's ``sss_core.figures`` (one renderer for the app, the inspect page and
the report), re-exported for the views, and ``figure_html``, a figure as a standalone download.

Example:
    >>> fig = projection_figure(proj.before, proj.after, groups, hover)
    >>> page = figure_html(fig, "SSS Lab: projection")
"""

from __future__ import annotations

import plotly.graph_objects as go

from sss_core.evaluation.report import html_page
from sss_core.figures import (COMPACT_COLUMNS, GROUP_COLOURS, HYPOTHESIS_X, METRIC_ORDER, MISSING,
                              NEIGHBOUR_RINGS, TOP1_BADGE_HELP,
                              Colouring, delta_norm_figure, hypothesis_scatter, joint_projection_figure,
                              lambda_colouring, log_ticks, metrics_comparison_figure, moves_figure,
                              paired_difference_figure,
                              probability_figure, probe_compact, probe_display, probe_frame, projection_figure,
                              sequential_figure,
                              sss_effect_figure, sweep_figure, trajectory_figure, trajectory_steps)

__all__ = ["COMPACT_COLUMNS", "GROUP_COLOURS", "HYPOTHESIS_X", "METRIC_ORDER", "MISSING", "NEIGHBOUR_RINGS",
           "TOP1_BADGE_HELP", "Colouring",
           "delta_norm_figure", "figure_html", "hypothesis_scatter", "joint_projection_figure", "lambda_colouring",
           "log_ticks", "metrics_comparison_figure", "moves_figure", "paired_difference_figure",
           "probability_figure",
           "probe_compact", "probe_display", "probe_frame", "projection_figure", "sequential_figure",
           "sss_effect_figure",
           "sweep_figure", "trajectory_figure", "trajectory_steps"]


def figure_html(fig: go.Figure, title: str = "SSS Lab", runs=()) -> str:
    """A standalone HTML page of ``fig`` titled ``title``, plotly.js inlined (opens offline); below it, for each
    of ``runs`` (EditRuns, SweepPoints, ...) that has a run record, how to make that run again
    (``RunRecord.to_html``: the equivalent command, the replay, the record)."""
    records = [r.record for r in runs if getattr(r, "record", None) is not None]
    if not fig.layout.title.text:  # a page of its own says what it shows (in the app, the page around it does)
        fig = go.Figure(fig)
        top = max(fig.layout.margin.t or 0, 60)
        fig.update_layout(title=dict(text=title, x=0, xanchor="left"), margin=dict(t=top))
    return html_page(fig, title, "inline", "".join(r.to_html() for r in records))
