"""Paired tests over the test faces of one seed: McNemar's exact test against statsmodels, and the
class-stratified bootstrap of the macro difference against hand-computed and scipy answers."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from bench.reporting.face_tests import compare_faces, macro_mean, mcnemar_exact, pair_faces, paired_bootstrap


def _outcomes(both_right: int, only_without: int, only_with: int, both_wrong: int):
    a = [True] * both_right + [True] * only_without + [False] * only_with + [False] * both_wrong
    b = [True] * both_right + [False] * only_without + [True] * only_with + [False] * both_wrong
    return a, b


@pytest.mark.parametrize("cells", [(50, 3, 12, 35), (10, 0, 0, 5), (0, 7, 7, 0), (100, 1, 9, 0), (3, 25, 2, 1)])
def test_mcnemar_matches_statsmodels_exact(cells):
    from statsmodels.stats.contingency_tables import mcnemar

    both_right, only_without, only_with, both_wrong = cells
    result = mcnemar_exact(*_outcomes(*cells))
    expected = mcnemar([[both_right, only_without], [only_with, both_wrong]], exact=True).pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert result.discordant == (only_without, only_with) and result.n == sum(cells)


def test_mcnemar_hand_computed():
    # b = 0, c = 5: p = 2 * (1/2)^5 = 1/16; the accuracy difference is 5 of 20 faces.
    result = mcnemar_exact(*_outcomes(10, 0, 5, 5))
    assert result.p_value == pytest.approx(1 / 16) and result.diff == pytest.approx(0.25)


def test_macro_mean_excludes_neutral_and_non_finite_faces():
    values = [9.0, 0.2, 0.4, math.nan, 1.0, 0.0]
    labels = [0, 1, 1, 1, 2, 3]
    # class 1: (0.2 + 0.4) / 2 = 0.3 (the NaN face has no AU map); class 2: 1.0; class 3: 0.0; Neutral left out.
    assert macro_mean(values, labels) == pytest.approx((0.3 + 1.0 + 0.0) / 3)
    assert math.isnan(macro_mean([1.0, math.nan], [0, 1]))


def test_bootstrap_constant_difference_is_a_point_interval():
    rng = np.random.default_rng(3)
    labels = np.repeat([1, 2, 3, 4, 5, 6], 10)
    wo = rng.uniform(0.2, 0.6, labels.size)
    result = paired_bootstrap(wo, wo + 0.1, labels, resamples=500)
    assert result.diff == pytest.approx(0.1)
    assert result.ci_low == pytest.approx(0.1) and result.ci_high == pytest.approx(0.1)
    assert result.p_value == pytest.approx(2 / 501)          # no resample at or below 0, with the +1 correction


def test_bootstrap_identical_sides_is_not_significant():
    labels = np.repeat([1, 2], 15)
    values = np.linspace(0.0, 1.0, labels.size)
    result = paired_bootstrap(values, values, labels, resamples=300)
    assert result.diff == 0.0 and result.p_value == 1.0


def test_bootstrap_is_stratified_by_class():
    # Within each class every face has the same pair of values, so a resample that keeps each class's
    # face count always gives the observed macro difference ((0.5 - 0.2) + (0.4 - 0.4)) / 2 = 0.15,
    # even though the classes differ in size; an unstratified resample would not.
    labels = np.array([1] * 3 + [2] * 30 + [0] * 5)
    wo = np.where(labels == 1, 0.2, 0.4)
    w = np.where(labels == 1, 0.5, 0.4)
    w[labels == 0] = 99.0                                    # Neutral is never in the macro average
    result = paired_bootstrap(wo, w, labels, resamples=400, seed=1)
    assert result.diff == pytest.approx(0.15)
    assert result.ci_low == pytest.approx(0.15) and result.ci_high == pytest.approx(0.15)


def test_bootstrap_one_class_agrees_with_scipy_percentile_interval():
    from scipy import stats

    rng = np.random.default_rng(0)
    wo = rng.normal(0.40, 0.10, 300)
    w = wo + rng.normal(0.03, 0.05, 300)
    labels = np.ones(300, dtype=int)
    ours = paired_bootstrap(wo, w, labels, resamples=4000, seed=7)
    ref = stats.bootstrap((wo, w), lambda a, b: np.mean(b) - np.mean(a), paired=True, vectorized=False,
                          n_resamples=4000, method="percentile", random_state=np.random.default_rng(11))
    se = np.std(w - wo, ddof=1) / np.sqrt(300)
    assert ours.diff == pytest.approx(np.mean(w - wo))
    # Two Monte Carlo estimates of the same interval (each end has a Monte Carlo sd of about 0.04 se
    # at 4000 resamples): they agree to a quarter of the standard error.
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.25 * se)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.25 * se)
    assert ours.p_value < 0.001


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(5)
    labels = np.repeat([1, 2, 3], 20)
    wo, w = rng.uniform(size=60), rng.uniform(size=60)
    assert paired_bootstrap(wo, w, labels, seed=4) == paired_bootstrap(wo, w, labels, seed=4)


def _faces(preds, labels, cos, order=None):
    frame = pl.DataFrame({"face": list(range(len(labels))), "label": labels, "pred": preds, "cam_cos": cos})
    return frame if order is None else frame[order]


def test_faces_are_matched_by_id_not_by_position():
    labels = [1, 2, 3, 1]
    wo = _faces([1, 0, 3, 0], labels, [0.1, 0.2, 0.3, 0.4])
    w = _faces([1, 2, 3, 1], labels, [0.2, 0.3, 0.4, 0.5], order=[3, 1, 0, 2])     # shuffled rows
    joined = pair_faces(wo, w, ("pred", "cam_cos"))
    assert joined["face"].to_list() == [0, 1, 2, 3]
    assert joined["cam_cos_w"].to_list() == pytest.approx([0.2, 0.3, 0.4, 0.5])
    cl = compare_faces(wo, w, "cl")
    assert cl.test == "mcnemar" and cl.discordant == (0, 2) and cl.p_value == pytest.approx(0.5)
    cos = compare_faces(wo, w, "cam_cos", resamples=200)
    assert cos.test == "bootstrap" and cos.diff == pytest.approx(0.1)
    assert compare_faces(wo, w, "att_cos_layer5") is None              # no per-face values for it


def test_faces_with_different_labels_are_not_the_same_split():
    wo = _faces([1, 2], [1, 2], [0.1, 0.2])
    w = _faces([1, 2], [1, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match="not the same test split"):
        pair_faces(wo, w, ("pred",))


def test_bootstrap_mean_average_counts_every_face_neutral_included():
    # Faithfulness and sanity average over all faces: Neutral counts, classes weigh by their size.
    labels = np.array([0, 0, 1, 1, 1, 1])
    wo = np.zeros(6)
    w = np.array([0.6, 0.6, 0.0, 0.0, 0.0, 0.0])
    mean = paired_bootstrap(wo, w, labels, resamples=300, average="mean")
    assert mean.diff == pytest.approx(0.2)                                    # 1.2 / 6
    assert mean.ci_low == pytest.approx(0.2) and mean.ci_high == pytest.approx(0.2)   # stratified: class sizes fixed
    macro = paired_bootstrap(wo, w, labels, resamples=300)
    assert macro.diff == 0.0                                                  # Neutral left out of the macro
    with pytest.raises(ValueError, match="unknown average"):
        paired_bootstrap(wo, w, labels, average="median")
