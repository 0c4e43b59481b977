"""Score calibration: PAV against hand-worked fits and a brute-force isotonic check, thresholds, JSON, the card."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from common.calibration import CalibrationError, ScoreCalibration, fit_calibration, pool_adjacent_violators
from common.model_card import ModelCard
from tests.common.test_model_card import CARD


def test_pav_pools_violators_by_hand() -> None:
    # y = 1, 0 at x = 1, 2 violate: pooled to 0.5; then 0 at 3 violates 0.5: pooled to 1/3; 1 at 4 stands.
    xs, ps = pool_adjacent_violators(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 0.0, 1.0]))
    np.testing.assert_allclose(xs, [1.0, 3.0, 4.0])
    np.testing.assert_allclose(ps, [1 / 3, 1 / 3, 1.0])
    # Weights count: one heavy negative outweighs two positives.
    xs, ps = pool_adjacent_violators(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0]), np.array([1.0, 1.0, 6.0]))
    np.testing.assert_allclose(ps, [0.25, 0.25])
    # Tied x values share one value whatever their order.
    xs, ps = pool_adjacent_violators(np.array([2.0, 1.0, 2.0, 3.0]), np.array([1.0, 0.0, 0.0, 1.0]))
    np.testing.assert_allclose(xs, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(ps, [0.0, 0.5, 1.0])


def _step_values(x: np.ndarray, xs: np.ndarray, ps: np.ndarray) -> np.ndarray:
    return np.interp(x, xs, ps)


def test_pav_is_the_least_squares_monotone_fit() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = (rng.random(60) < 1 / (1 + np.exp(-2 * x))).astype(float)
    xs, ps = pool_adjacent_violators(x, y)
    fitted = _step_values(x, xs, ps)
    assert np.all(np.diff(fitted[np.argsort(x)]) >= 0)
    best = np.sum((fitted - y) ** 2)
    # No monotone perturbation does better: pooled means are the optimum (checked against random monotone fits).
    order = np.argsort(x)
    for _ in range(200):
        other = np.empty(60)
        other[order] = np.sort(np.clip(fitted[order] + rng.normal(0, 0.05, 60), 0, 1))
        assert np.sum((other - y) ** 2) >= best - 1e-12
    # Each block's value is the mean label of its points.
    for value in np.unique(ps):
        members = np.isclose(fitted, value)
        assert y[members].mean() == pytest.approx(value)


def _separable(n_ids: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.6, 0.1, 400), rng.normal(0.2, 0.1, 400 * (n_ids - 1))


def test_fit_is_monotone_and_calibrated_in_sample() -> None:
    pos, neg = _separable()
    cal = fit_calibration(pos, neg, identities=20)
    grid = np.linspace(-1, 1, 2001)
    p = cal.p_same(grid)
    assert np.all(np.diff(p) >= 0) and p[0] == 0.0 and p[-1] == 1.0
    # In-sample, the mean predicted probability of all pairs equals the base rate (PAV preserves sums).
    scores = np.concatenate([pos, neg]).astype(np.float32)
    assert cal.p_same(scores).mean() == pytest.approx(cal.base_rate, rel=1e-9)
    assert cal.base_rate == pytest.approx(1 / 20)
    assert (cal.positives, cal.negatives, cal.identities) == (400, 7600, 20)
    # Down a ranked list the probability never increases.
    ranked = -np.sort(-scores)[:50]
    assert np.all(np.diff(cal.p_same(ranked)) <= 0)


@pytest.mark.parametrize("far", [0.001, 0.01, 0.0123, 0.1, 0.5])
def test_threshold_meets_the_false_accept_rate_and_is_the_smallest(far: float) -> None:
    pos, neg = _separable()
    neg32 = neg.astype(np.float32)
    cal = fit_calibration(pos, neg, identities=20)
    t = cal.threshold(far)
    assert np.mean(neg32 >= t) <= far
    exact = np.nextafter(np.sort(neg32)[::-1][int(np.floor(far * neg.size))], np.float32(np.inf))
    assert t >= exact
    if int(np.floor(far * neg.size)) + 1 in cal.negative_ranks:  # every rank up to ~170 is stored: exact there
        assert t == exact
    below = np.nextafter(np.float32(t), np.float32(-np.inf))
    if t == exact:
        assert np.mean(neg32 >= below) > far  # one float lower would accept too many


def test_threshold_refuses_a_rate_outside_zero_one() -> None:
    cal = fit_calibration(*_separable(), identities=20)
    for far in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(CalibrationError, match="false-accept"):
            cal.threshold(far)


def test_large_sets_are_subsampled_with_their_base_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    import common.calibration as calibration

    pos, neg = _separable()
    full = fit_calibration(pos, neg, identities=20)
    monkeypatch.setattr(calibration, "MAX_FIT_PAIRS", 2000)
    cal = fit_calibration(pos, neg, identities=20)
    assert len(cal.scores) < len(full.scores)  # PAV saw a sample
    assert (cal.positives, cal.negatives) == (400, 7600)  # counts of all pairs; the tail uses every negative
    assert cal.negative_ranks == full.negative_ranks and cal.negative_scores == full.negative_scores
    scores = np.concatenate([pos, neg])
    assert abs(cal.p_same(scores).mean() - cal.base_rate) < 0.01


def test_json_round_trip_and_card_metadata() -> None:
    cal = fit_calibration(*_separable(), identities=20)
    assert ScoreCalibration.from_dict(json.loads(cal.to_json())) == cal
    card = CARD
    assert "vireid.calibration" not in card.to_metadata()  # cards without one are as before
    assert ModelCard.from_metadata(card.to_metadata()).calibration is None
    calibrated = replace(card, calibration=cal)
    assert ModelCard.from_metadata(calibrated.to_metadata()) == calibrated
    broken = {**calibrated.to_metadata(), "vireid.calibration": '{"scores": [0.1]}'}
    with pytest.raises(CalibrationError, match="malformed"):
        ModelCard.from_metadata(broken)


def test_malformed_calibrations_are_refused() -> None:
    cal = fit_calibration(*_separable(), identities=20)
    with pytest.raises(CalibrationError, match="increasing"):
        replace(cal, probabilities=tuple(reversed(cal.probabilities)))
    with pytest.raises(CalibrationError, match="finite"):
        replace(cal, scores=(float("nan"), *cal.scores[1:]))
    with pytest.raises(CalibrationError, match="pairs"):
        fit_calibration(np.array([]), np.array([0.1]), identities=2)
