"""The taught-label classifier's maths (issue 27): the numpy logistic regression agrees with
scikit-learn's, the threshold keeps the held-out precision, reliable negatives leave the
positives' look-alikes out of the background, and too little teaching is refused."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelkit import taught


def _unit(rng: np.random.Generator, n: int, centre: np.ndarray, spread: float) -> np.ndarray:
    x = centre + spread * rng.standard_normal((n, centre.shape[0]))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("c", [0.1, 10.0])
def test_logistic_regression_matches_scikit_learn(c: float) -> None:
    rng = np.random.default_rng(3)
    x = _unit(rng, 300, np.zeros(64), 1.0)
    y = (x[:, 0] + 0.2 * rng.standard_normal(300) > 0.05).astype(int)
    weight = rng.uniform(0.5, 2.0, 300)
    coef, intercept = taught.logistic(x, y, weight, c=c)
    reference = LogisticRegression(C=c, max_iter=10_000, tol=1e-12).fit(x, y, sample_weight=weight)
    assert np.abs(coef - reference.coef_[0]).max() < 1e-4
    assert abs(intercept - float(reference.intercept_[0])) < 1e-4


def test_the_threshold_sits_below_the_last_positive_that_surely_keeps_precision() -> None:
    conf = np.array([99.0, 98, 97, 96, 95, 94, 90, 80, 70, 60, 50, 40])
    y = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1])
    threshold, precision, recall, surely = taught.choose_threshold(conf, y, target=0.65)
    # Down to 70, eight of nine are right: surely (80% Wilson) 0.69. Down to 40, 9 of 12: 0.58.
    assert (threshold, precision, recall) == (65.0, 8 / 9, 8 / 9)
    assert 0.65 <= surely < precision
    # Asked for more, it stops above the first miss: seven of seven, surely 0.81.
    assert taught.choose_threshold(conf, y, target=0.75)[:2] == (85.0, 1.0)


def test_one_lucky_photo_on_top_is_no_evidence() -> None:
    assert taught.wilson_lower(np.array([1]), np.array([1]))[0] < 0.6
    assert taught.wilson_lower(np.array([3]), np.array([3]))[0] > 0.6
    conf = np.array([90.0, 80, 70, 60, 50, 40])
    y = np.array([1, 0, 0, 1, 0, 1])
    *_, surely = taught.choose_threshold(conf, y, target=0.8)
    assert surely < 0.6  # nothing here would pass the floor


def test_reliable_negatives_leave_out_the_look_alikes() -> None:
    rng = np.random.default_rng(5)
    beach, other = np.eye(32)[0] * 3, np.eye(32)[1] * 3
    positives = _unit(rng, 5, beach, 0.5)
    others = np.vstack([_unit(rng, 4, beach, 0.5), _unit(rng, 40, other, 0.5)])
    mask = taught.reliable_negatives(positives, others)
    assert not mask[:4].any() and mask[4:].all()


def test_a_separable_label_is_taught_with_its_quality_and_scores_new_photos() -> None:
    rng = np.random.default_rng(7)
    beach, other = np.eye(32)[0] * 2, np.eye(32)[1] * 2
    result = taught.train(_unit(rng, 6, beach, 0.15), np.zeros((0, 32)), _unit(rng, 60, other, 0.15), seed=1)
    assert result.refused is None and result.classifier is not None
    assert result.folds == 5 and result.cv_precision == 1.0 and result.cv_recall == 1.0
    clf = taught.Classifier.unpack(
        result.classifier.pack(),
        result.classifier.platt_a,
        result.classifier.platt_b,
        result.classifier.threshold,
    )
    new = clf.confidences(np.vstack([_unit(rng, 5, beach, 0.15), _unit(rng, 5, other, 0.15)]))
    assert (new[:5] >= clf.threshold).all() and (new[5:] < clf.threshold).all()
    # Smoothed Platt targets: six photos never claim certainty.
    assert new.max() < 99
    assert len(result.background_confidence) == 60


def test_too_little_or_too_noisy_teaching_is_refused_with_a_reason() -> None:
    rng = np.random.default_rng(9)
    some = _unit(rng, 40, np.zeros(16), 1.0)
    few = taught.train(some[:2], np.zeros((0, 16)), some[2:], seed=1)
    assert few.classifier is None and few.refused == "taught from 2 photos; 3 are needed"
    noise = taught.train(some[:8], some[8:12], some[12:], seed=1)  # the same distribution
    assert noise.classifier is None
    assert (
        noise.refused is not None and "could be as low as" in noise.refused and "below 0.60" in noise.refused
    )


def test_the_background_sample_is_the_same_on_every_run() -> None:
    seed = taught.seed_for("owner", "beach")
    a = taught.sample_background(10_000, 5, seed)
    assert np.array_equal(a, taught.sample_background(10_000, 5, seed))
    assert len(a) == 5 * taught.BACKGROUND_PER_POSITIVE and len(set(a.tolist())) == len(a)
    assert len(taught.sample_background(10, 5, seed)) == 10
