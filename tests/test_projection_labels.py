"""Text label placement and axis ranges of the projection plot (app.panels.projection): labels go where they
overlap no other label and no point and stay inside the plot, a label with no free place is left out, the
axes span the points (one scale on both for PCA only), and the tables' column widths fit their column."""

from __future__ import annotations

import numpy as np
import pytest

from app.panels.projection import (NEIGHBOUR_COLUMNS, PAGE_WIDTH_PX, PLOT_WIDTH_PX, ROW_MARKERS_PX, SENTENCE_COLUMNS,
                                   column_widths)
from app.panels.projection_plot import (LABEL_CHAR_PX, LABEL_FONT_PX, LABEL_GAP_PX, PAD, PLOT_MARGIN_PX, axis_ranges,
                                        label_text, place_labels)
from sss_core.projection import Projection


def _box(point, where, text):
    """The label box place_labels reasons with: (x0, y0, x1, y1) px."""
    name, (dx, dy) = where
    w, h = LABEL_CHAR_PX * len(text), LABEL_FONT_PX + 3
    sx, sy = np.sign(dx), np.sign(dy)
    cx, cy = point[0] + dx + sx * w / 2, point[1] + dy + sy * h / 2
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def test_a_lone_point_is_labelled_above_it_at_the_gap_beyond_its_marker():
    where = place_labels(np.array([[100.0, 100.0]]), [0], ["Paris"], (400, 300), marker_px=5)
    assert where == {0: ("top center", (0.0, 5 + LABEL_GAP_PX))}


def test_a_second_label_moves_off_the_first_and_off_the_points():
    points = np.array([[100.0, 100.0], [100.0, 118.0]])  # the second point sits where the first's label would go
    texts = ["Melbourne is a city in", "Sydney is a city in"]
    where = place_labels(points, [0, 1], texts, (400, 300), marker_px=5)
    assert where[0][0] == "bottom center"  # above it is the second point
    assert where[1][0] == "top center"
    a, b = _box(points[0], where[0], texts[0]), _box(points[1], where[1], texts[1])
    assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    for box in (a, b):
        for (x, y) in points:  # no label covers a point's marker
            assert not (box[0] < x + 5 and x - 5 < box[2] and box[1] < y + 5 and y - 5 < box[3])


def test_labels_stay_inside_the_plot_and_one_with_no_free_place_is_left_out():
    # a point in the top-right corner: its label goes below-left; one boxed in by points all round gets none
    corner = place_labels(np.array([[395.0, 295.0]]), [0], ["Washington is a city in"], (400, 300), marker_px=3)
    assert corner[0][0] == "bottom left"
    ring = [[200 + 40 * np.cos(a), 150 + 25 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 24, endpoint=False)]
    points = np.array([[200.0, 150.0], *ring, [200, 175], [200, 125], [150, 150], [250, 150]])
    assert place_labels(points, [0], ["A long sentence that fits nowhere"], (400, 300), marker_px=6) == {}


def test_a_label_is_cut_to_its_first_characters():
    assert label_text("Melbourne is a city in") == "Melbourne is a city in"
    assert label_text("The capital of the country where Melbourne lies is") == "The capital of the country …"


def _projection(before, after, method):
    return Projection(np.asarray(before, float), np.asarray(after, float), method, method)


def test_umap_and_tsne_axes_each_span_the_points_and_pca_keeps_one_scale():
    before, after = [[0, 0], [10, 1]], [[2, 0], [8, 2]]  # 10 wide, 2 high
    x, y = axis_ranges(_projection(before, after, "tsne"), equal=False, size=(PLOT_WIDTH_PX, 720 - PLOT_MARGIN_PX))
    assert x == pytest.approx([-PAD * 10, 10 + PAD * 10]) and y == pytest.approx([-PAD * 2, 2 + PAD * 2])
    x, y = axis_ranges(_projection(before, after, "pca"), equal=True, size=(PLOT_WIDTH_PX, 720 - PLOT_MARGIN_PX))
    assert (x[1] - x[0]) / (y[1] - y[0]) == pytest.approx(PLOT_WIDTH_PX / (720 - PLOT_MARGIN_PX))
    assert x == pytest.approx([-PAD * 10, 10 + PAD * 10])  # the wide axis keeps its range, the other widens
    assert (y[0] + y[1]) / 2 == pytest.approx(1.0)
    x, y = axis_ranges(_projection([[1, 1]], [[1, 1]], "pca"), equal=True, size=(590, 380))  # one point: a range
    assert x[0] < 1 < x[1] and y[0] < 1 < y[1]


def test_table_columns_fit_the_page_and_shrink_with_a_narrower_column():
    for widths, markers in ((SENTENCE_COLUMNS, ROW_MARKERS_PX), (NEIGHBOUR_COLUMNS, 0)):
        assert sum(widths.values()) + markers <= PAGE_WIDTH_PX
        full = {c: cfg["width"] for c, cfg in column_widths(widths, PAGE_WIDTH_PX).items()}
        assert full == widths  # the Projection page: the widths as given
        narrow = {c: cfg["width"] for c, cfg in column_widths(widths, 628).items()}  # the Edit page's column
        assert list(narrow) == list(widths) and sum(narrow.values()) + markers <= 628
        assert all(30 <= narrow[c] < widths[c] for c in widths)
