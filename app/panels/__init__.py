"""Result panels of the views, one module per view (the figures themselves are ``sss_core.figures``,
through ``app.figures``):

- ``common``: missing values and number formats, a run's name, caption and notices, tables with their
  CSV, a figure with its table, the cached projection fit (every view);
- ``edit``: the metric cards, the probe table, the weight delta and the exports (Edit view);
- ``projection``: the projection with arrows, colourings and nearest neighbours (Edit, Projection);
- ``compare``: A and B's paired differences, weight deltas, trajectories, joint projection (Compare);
- ``hypothesis``: the verdicts, scatter, correlations and paired effect of SSS (Hypothesis).

Views stay thin: they arrange these panels under the input widgets of app.inputs and call them as
``panels.<name>`` (re-exported here). Every panel reads and writes session state only through
app.state, and draws figures only from app.figures.
"""

from app.panels.common import (MISSING, LAMBDA_FORMAT, STYLED_CELLS, TOOK, is_missing, fmt_number, fmt_lambda,
                               shown_c, run_label, run_caption, edit_took, run_flags, run_notices, earlier_run_notice,
                               cached_projection, show_frame, link_problems_notice, chart_with_table,
                               frame_csv_button)
from app.panels.edit import (metrics_row, LAMBDA_NEW_BEFORE, LAMBDA_NEW_AFTER, lambda_caption, update_norm_warnings,
                             probe_frame, probe_table, delta_panel, embeddings_csv, run_json, export_buttons,
                             salience_panel, world_panel)
from app.panels.projection import (POOLING_LABELS, hover_texts, selected_points, COLOUR_BY, COLOUR_LABELS, KNN_UNITS,
                                   DISAGREE, move_agreement, colouring, axis_titles, faithfulness_note,
                                   clear_selection, projection_panel)
from app.panels.compare import (SAME_P, SAME_COSINE, paired_probe_frame, delta_cosine_of, same_edit_text,
                                compare_projection_panel, paired_panel, trajectory_of)
from app.panels.hypothesis import hypothesis_results, verdict_line

__all__ = ["world_panel", "COLOUR_BY", "COLOUR_LABELS", "DISAGREE", "KNN_UNITS", "LAMBDA_FORMAT", "LAMBDA_NEW_AFTER",
           "LAMBDA_NEW_BEFORE", "MISSING", "POOLING_LABELS", "SAME_COSINE", "SAME_P", "STYLED_CELLS", "TOOK",
           "axis_titles", "cached_projection", "chart_with_table", "clear_selection", "colouring",
           "compare_projection_panel", "delta_cosine_of", "delta_panel", "earlier_run_notice", "edit_took",
           "embeddings_csv", "export_buttons", "faithfulness_note", "fmt_lambda", "fmt_number", "frame_csv_button",
           "hover_texts", "hypothesis_results", "is_missing", "lambda_caption", "link_problems_notice", "metrics_row",
           "move_agreement", "paired_panel", "paired_probe_frame", "probe_frame", "probe_table", "projection_panel",
           "run_caption", "run_flags", "run_json", "run_label", "run_notices", "salience_panel", "same_edit_text",
           "selected_points",
           "show_frame", "shown_c", "trajectory_of", "update_norm_warnings", "verdict_line"]
