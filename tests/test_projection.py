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


# --- degenerate input (issue 24.5): a defined layout or a clear message, never NaN, never a crash ----

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from sss_core.errors import SSSError  # noqa: E402
from sss_core.projection import SAME_POINT_RTOL, ProjectionError  # noqa: E402


def _mostly_unmoved(n: int = 30, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n sentences of which only 0-3 move (the SERAC case: most sentences are not routed to the edit)."""
    rng = np.random.default_rng(seed)
    before = rng.normal(size=(n, d)).astype(np.float32)
    after = before.copy()
    after[:4] += rng.normal(size=(4, d)).astype(np.float32)
    after[4] += np.float32(1e-3) * SAME_POINT_RTOL  # a move far below the tolerance: the same point
    return before, after


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_a_sentence_that_did_not_move_gets_the_same_coordinates_by_every_method(method):
    before, after = _mostly_unmoved()
    proj = project(before, after, method=method)
    assert proj.method == method and proj.message is None
    np.testing.assert_array_equal(proj.moved, [True] * 4 + [False] * 26)
    np.testing.assert_array_equal(proj.before[4:], proj.after[4:])  # exactly: no arrow is drawn
    assert (np.linalg.norm(proj.after[:4] - proj.before[:4], axis=1) > 0).all()


def test_duplicate_sentences_share_their_place_in_a_joint_fit():
    # the Compare view projects two runs' embeddings together: both runs' before rows are the same points
    before, after = _mostly_unmoved(20)
    other = after.copy()
    other[:2] = before[:2]
    proj = project(np.concatenate([before, before]), np.concatenate([after, other]), method="tsne")
    np.testing.assert_array_equal(proj.before[:20], proj.before[20:])
    np.testing.assert_array_equal(proj.moved, [True] * 4 + [False] * 16 + [False] * 2 + [True] * 2 + [False] * 16)


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_too_few_distinct_points_fall_back_to_pca_with_a_message(method):
    rng = np.random.default_rng(0)
    before = rng.normal(size=(20, 8)).astype(np.float32)
    before[5:] = before[0]  # 5 distinct sentences, all unmoved
    proj = project(before, before.copy(), method=method)
    assert proj.method == "pca" and proj.requested == method and not proj.moved.any()
    assert proj.message == (f"{'UMAP' if method == 'umap' else 't-SNE'} needs at least 15 distinct points to say "
                            "anything about neighbourhoods; these 20 sentences before and after have 5 distinct "
                            "embeddings, so this is PCA")
    np.testing.assert_array_equal(proj.before, proj.after)
    np.testing.assert_array_equal(proj.before[5:], np.broadcast_to(proj.before[0], (15, 2)))


_IN_CHILD = """
import json, sys
import numpy as np
from sss_core.projection import project
out = []
for name, before, after in CASES:
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    for method in ("pca", "umap", "tsne"):
        p = project(before, after, method=method)
        out.append([name, method, p.method, p.message, bool(np.isfinite(p.before).all() and np.isfinite(p.after).all()),
                    list(p.before.shape), int(p.moved.sum())])
print(json.dumps(out))
"""


def _project_in_a_child(cases: str) -> list:
    """Run project on ``cases`` (Python source of [(name, before, after)]) by every method in a child process,
    so a segmentation fault fails the test instead of killing pytest."""
    code = _IN_CHILD.replace("CASES", cases)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, f"the projection crashed the process (exit {done.returncode}): {done.stderr[-800:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_identical_vectors_give_one_point_and_a_message_never_nan_or_a_crash():
    rows = _project_in_a_child("[('identical', np.ones((20, 8)), np.ones((20, 8)))]")
    message = ("all 20 sentences have one and the same embedding before and after; there is nothing to lay out, "
               "so they are drawn at one point")
    assert rows == [["identical", m, "pca", message, True, [20, 2], 0] for m in ("pca", "umap", "tsne")]
    proj = project(np.ones((20, 8)), np.ones((20, 8)), method="tsne")  # in-process now that it is known to be safe
    np.testing.assert_array_equal(proj.before, np.zeros((20, 2)))
    np.testing.assert_array_equal(proj.after, np.zeros((20, 2)))


def test_no_degenerate_input_crashes_or_gives_nan():
    cases = """[
        ('no sentences', np.zeros((0, 8)), np.zeros((0, 8))),
        ('no dimensions', np.zeros((20, 0)), np.zeros((20, 0))),
        ('one sentence unmoved', np.ones((1, 8)), np.ones((1, 8))),
        ('two points', np.r_[np.zeros((10, 8)), np.ones((10, 8))], np.r_[np.zeros((10, 8)), np.ones((10, 8))]),
        ('one moved of many identical', np.ones((20, 8)), np.r_[np.full((1, 8), 2.0), np.ones((19, 8))]),
        ('large values', np.random.default_rng(0).normal(size=(20, 8)) * 1e100,
         np.random.default_rng(1).normal(size=(20, 8)) * 1e100),
        ('tiny values', np.random.default_rng(0).normal(size=(20, 8)) * 1e-100,
         np.random.default_rng(1).normal(size=(20, 8)) * 1e-100),
        ('a tiny spread on a large offset', 1e6 + np.random.default_rng(0).normal(size=(20, 8)) * 1e-9,
         1e6 + np.random.default_rng(1).normal(size=(20, 8)) * 1e-9),
        ('collinear', np.outer(np.arange(20.0), np.ones(8)), np.outer(np.arange(20.0) + 0.5, np.ones(8))),
        ('one column', np.arange(20.0)[:, None], np.arange(20.0)[:, None]),
    ]"""
    rows = _project_in_a_child(cases)
    assert len(rows) == 30
    bad = [r for r in rows if not r[4]]
    assert not bad, f"NaN or infinite coordinates: {bad}"
    assert {r[0]: r[5] for r in rows}["no sentences"] == [0, 2]
    two = [r for r in rows if r[0] == "two points" and r[1] != "pca"]
    assert all(r[2] == "pca" and "have 2 distinct embeddings" in r[3] for r in two)


def test_nan_or_infinite_embeddings_are_a_user_error_naming_the_sentence():
    before, after = _mostly_unmoved(20)
    after[7, 3] = np.nan
    with pytest.raises(ProjectionError) as err:
        project(before, after, method="tsne")
    assert str(err.value) == ("the embedding of sentence 7 (after the edit) holds NaN or infinite values, so nothing "
                              "can be projected; the model's hidden states overflowed or the edit broke the model")
    assert isinstance(err.value, SSSError) and isinstance(err.value, ValueError)
    before[2, 0] = np.inf
    with pytest.raises(ProjectionError, match=r"^the embedding of sentence 2 \(before the edit\) holds NaN"):
        project(before, after)
    with pytest.raises(ProjectionError,
                       match=r"^the embedding of sentence 0 \(before the edit\) holds values above 1e\+150, so"):
        project(np.ones((20, 8)) * 1e300, np.ones((20, 8)))
