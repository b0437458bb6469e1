"""UMAP n_neighbors / min_dist and t-SNE perplexity: defaults reproduce the fits made before they could
be chosen, the values used are reported, out-of-range values are refused with a message naming them."""

from __future__ import annotations

import numpy as np
import pytest

from sss_core.projection import (DEFAULT_MIN_DIST, DEFAULT_N_NEIGHBORS, ProjectionError, auto_perplexity,
                                 parse_parameter, project)


def _points(n: int, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    before = rng.normal(size=(n, d))
    after = before + rng.normal(scale=0.3, size=(n, d))
    return before, after


def test_tsne_default_perplexity_is_the_automatic_one_and_is_reported():
    before, after = _points(20)  # 40 distinct points: (40 - 1) / 3 = 13
    default = project(before, after, "tsne")
    explicit = project(before, after, "tsne", perplexity=13.0)
    assert auto_perplexity(40) == 13.0 and auto_perplexity(400) == 30.0 and auto_perplexity(4) == 2.0
    assert default.parameters == explicit.parameters == {"perplexity": 13.0}
    assert default.asked == {"perplexity": None} and explicit.asked == {"perplexity": 13.0}
    np.testing.assert_array_equal(default.after, explicit.after)
    other = project(before, after, "tsne", perplexity=5)
    assert other.parameters == {"perplexity": 5.0} and other.parameters_text() == "perplexity = 5"
    assert not np.allclose(other.after, default.after)


def test_umap_defaults_are_umap_learns_and_other_values_change_the_layout():
    before, after = _points(20)
    default = project(before, after, "umap")
    explicit = project(before, after, "umap", n_neighbors=DEFAULT_N_NEIGHBORS, min_dist=DEFAULT_MIN_DIST)
    assert default.parameters == {"n_neighbors": 15, "min_dist": 0.1}
    assert default.parameters_text() == "n_neighbors = 15, min_dist = 0.1"
    np.testing.assert_array_equal(default.after, explicit.after)
    tight = project(before, after, "umap", n_neighbors=5, min_dist=0.0)
    assert tight.parameters == {"n_neighbors": 5, "min_dist": 0.0} and tight.message is None
    assert not np.allclose(tight.after, default.after)


def test_a_value_the_points_cannot_take_is_lowered_and_said():
    before, after = _points(20)  # 40 distinct points
    proj = project(before, after, "tsne", perplexity=60)
    assert proj.parameters == {"perplexity": 39.0}
    assert proj.message == "perplexity 60 was asked for; 40 distinct points allow less than 40, so 39 is used"


def test_pca_has_no_parameters_and_a_fallback_drops_them():
    before, after = _points(20)
    assert project(before, after, "pca", n_neighbors=30).parameters == {}
    few = project(*_points(5), "umap", n_neighbors=4)
    assert few.method == "pca" and few.parameters == {} and few.parameters_text() == ""


@pytest.mark.parametrize("kwargs, message", [
    ({"n_neighbors": 1}, "UMAP n_neighbors must be a whole number from 2 to 200; got 1"),
    ({"n_neighbors": 201}, "UMAP n_neighbors must be a whole number from 2 to 200; got 201"),
    ({"n_neighbors": 7.5}, "UMAP n_neighbors must be a whole number from 2 to 200; got 7.5"),
    ({"min_dist": -0.1}, "UMAP min_dist must be a number from 0 to 1; got -0.1"),
    ({"min_dist": 1.5}, "UMAP min_dist must be a number from 0 to 1; got 1.5"),
    ({"perplexity": 1}, "t-SNE perplexity must be a number from 2 to 100; got 1"),
    ({"perplexity": float("nan")}, "t-SNE perplexity must be a number from 2 to 100; got nan"),
])
def test_out_of_range_parameters_are_refused_naming_the_range(kwargs, message):
    with pytest.raises(ProjectionError) as err:
        project(*_points(20), "umap", **kwargs)
    assert str(err.value) == message


def test_parse_parameter_reads_link_text():
    assert parse_parameter("n_neighbors", "30") == 30 and isinstance(parse_parameter("n_neighbors", "30"), int)
    assert parse_parameter("min_dist", "0.25") == 0.25 and parse_parameter("perplexity", "12.5") == 12.5
    with pytest.raises(ProjectionError, match="^perplexity must be a number; got 'lots'$"):
        parse_parameter("perplexity", "lots")
    with pytest.raises(ProjectionError, match="from 2 to 200; got 500$"):
        parse_parameter("n_neighbors", "500")
    with pytest.raises(ProjectionError, match="'spread' is not a projection parameter"):
        parse_parameter("spread", "1")
