"""2-D projections: PCA is deterministic and joint, few points fall back to PCA, UMAP/t-SNE run."""

from __future__ import annotations

import numpy as np
import pytest

from sss_core.projection import MIN_POINTS, pca_2d, project, warm_up_umap


def _points(n: int, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    before = rng.normal(size=(n, d)).astype(np.float32)
    after = before.copy()
    after[0] += 3.0  # the "edited" sentence moves, the others stay
    return before, after


def test_pca_is_deterministic_and_joint():
    before, after = _points(30)
    a, b = project(before, after), project(before, after)
    assert a.method == b.method == "pca" and a.message is None
    np.testing.assert_array_equal(a.before, b.before)
    np.testing.assert_array_equal(a.after, b.after)
    joint, _ = pca_2d(np.concatenate([before, after]))
    np.testing.assert_allclose(np.concatenate([a.before, a.after]), joint)
    assert a.before.shape == a.after.shape == (30, 2)
    assert 0 < sum(a.explained_variance) <= 1


def test_pca_keeps_unmoved_points_in_place():
    before, after = _points(30)
    proj = project(before, after)
    np.testing.assert_allclose(proj.before[1:], proj.after[1:], atol=1e-9)
    assert np.linalg.norm(proj.after[0] - proj.before[0]) > 0.1


def test_pca_sign_is_fixed():
    x = np.random.default_rng(1).normal(size=(20, 5))
    a, _ = pca_2d(x)
    b, _ = pca_2d(x[::-1].copy())  # the same cloud in another order: the same axes
    np.testing.assert_allclose(a, b[::-1], atol=1e-9)


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_few_points_fall_back_to_pca_with_a_message(method):
    before, after = _points(MIN_POINTS - 1)
    proj = project(before, after, method=method)
    assert proj.method == "pca" and proj.requested == method
    assert "PCA" in proj.message and str(MIN_POINTS) in proj.message


def test_tiny_inputs_do_not_fail():
    for n in (1, 2):
        before, after = _points(n)
        proj = project(before, after)
        assert proj.before.shape == (n, 2) and np.isfinite(proj.after).all()


def test_tsne_runs_on_enough_points():
    before, after = _points(MIN_POINTS + 5)
    proj = project(before, after, method="tsne")
    assert proj.method == "tsne" and proj.before.shape == (MIN_POINTS + 5, 2)
    assert np.isfinite(proj.before).all()


def test_umap_warm_up_then_project():
    assert warm_up_umap() > 0
    before, after = _points(MIN_POINTS + 5)
    proj = project(before, after, method="umap")
    assert proj.method == "umap" and proj.after.shape == (MIN_POINTS + 5, 2)
    assert proj.seconds > 0  # timed (how fast: benchmarks/bench_projection.py)


def test_bad_input():
    before, after = _points(20)
    with pytest.raises(ValueError, match="unknown projection"):
        project(before, after, method="mds")
    with pytest.raises(ValueError, match="shape"):
        project(before, after[:5])
