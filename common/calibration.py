"""ScoreCalibration: a monotone map from a cross-modal match score to P(same person), and false-accept thresholds.

The map is an isotonic regression of "same identity" (1/0) on the score of cross-modal pairs of held-out
identities, fitted by pool-adjacent-violators (PAV): the non-decreasing step function closest in squared error to
the labels, i.e. the fraction of same-identity pairs among pairs of similar score, with neighbouring blocks pooled
until the fractions increase with the score. Between blocks the probability is interpolated linearly; below the
first and above the last block it is constant. Because the map never decreases, ``p_same`` never increases down a
ranked list. ``threshold(far)`` is the smallest score whose false-accept rate on the calibration negatives is at
most ``far``. Everything serialises to plain JSON for the ``vireid.calibration`` key of the ModelCard.

The probabilities hold at the calibration set's base rate (positives / pairs, about 1 / identities): a gallery of
many more identities has a lower prior, so a score there means a lower probability (docs/method.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Ranks of the descending negative scores kept for thresholds: geometrically spaced, every rank up to ~170.
NEGATIVE_RANKS_KEPT = 2000
# PAV runs on at most this many pairs: a stratified sample (same fraction of positives and negatives) beyond it.
MAX_FIT_PAIRS = 500_000


class CalibrationError(ValueError):
    """Calibration data or a stored calibration is unusable (no pairs of a class, malformed JSON, bad FAR)."""


def pool_adjacent_violators(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic (non-decreasing) least-squares fit of ``y`` on ``x``; returns knots ``(xs, ps)``, xs increasing.

    Equal ``x`` values share one fitted value. Each pooled block contributes its first and last ``x`` as knots
    (one knot when they coincide), so ``np.interp(x, xs, ps)`` is the step function within blocks and linear
    between them.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (x.shape == y.shape == w.shape and x.ndim == 1 and x.size):
        raise CalibrationError(f"need equal-length non-empty 1-D x, y, weights (got {x.shape}, {y.shape}, {w.shape})")
    ux, inverse = np.unique(x, return_inverse=True)
    sw = np.bincount(inverse, weights=w)
    swy = np.bincount(inverse, weights=w * y)
    # Runs of equal means are pooled up front (PAV would pool them anyway): fewer blocks for the loop below.
    means = swy / sw
    starts = np.flatnonzero(np.r_[True, means[1:] != means[:-1]])
    ends = np.r_[starts[1:], ux.size] - 1
    block_w, block_wy = np.add.reduceat(sw, starts).tolist(), np.add.reduceat(swy, starts).tolist()
    lo, hi = ux[starts].tolist(), ux[ends].tolist()
    stack: list[list[float]] = []  # [sum w, sum w*y, lowest x, highest x]
    for bw, bwy, bl, bh in zip(block_w, block_wy, lo, hi, strict=True):
        block = [bw, bwy, bl, bh]
        while stack and stack[-1][1] * block[0] >= block[1] * stack[-1][0]:  # previous mean >= this mean: pool
            prev = stack.pop()
            block = [prev[0] + block[0], prev[1] + block[1], prev[2], block[3]]
        stack.append(block)
    xs: list[float] = []
    ps: list[float] = []
    for bw, bwy, bl, bh in stack:
        for knot in (bl, bh) if bh > bl else (bl,):
            xs.append(knot)
            ps.append(bwy / bw)
    return np.asarray(xs), np.asarray(ps)


@dataclass(frozen=True)
class ScoreCalibration:
    """P(same person | cross-modal score) and the false-accept rate of a score threshold, from held-out pairs.

    Attributes:
        scores, probabilities: knots of the monotone map (scores increasing, probabilities non-decreasing).
        negative_ranks, negative_scores: the ``r``-th largest score among the negative (different-identity) pairs,
            for geometrically spaced ranks ``r`` (1-based).
        positives, negatives, identities: same-identity pairs, different-identity pairs and identities fitted on.
    """

    scores: tuple[float, ...]
    probabilities: tuple[float, ...]
    negative_ranks: tuple[int, ...]
    negative_scores: tuple[float, ...]
    positives: int
    negatives: int
    identities: int

    def __post_init__(self) -> None:
        xs, ps = np.asarray(self.scores), np.asarray(self.probabilities)
        ranks, neg = np.asarray(self.negative_ranks), np.asarray(self.negative_scores)
        if not (xs.size and xs.shape == ps.shape and ranks.size and ranks.shape == neg.shape):
            raise CalibrationError("calibration knots and negative tail must be non-empty and of matching lengths")
        if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ps)) and np.all(np.isfinite(neg))):
            raise CalibrationError("calibration values must be finite")
        if np.any(np.diff(xs) <= 0) or np.any(np.diff(ps) < 0) or ps[0] < 0 or ps[-1] > 1:
            raise CalibrationError("calibration knots must have increasing scores and non-decreasing probabilities")
        if ranks[0] != 1 or np.any(np.diff(ranks) <= 0) or np.any(np.diff(neg) > 0) or ranks[-1] > self.negatives:
            raise CalibrationError("negative tail must start at rank 1 with increasing ranks and decreasing scores")
        if self.positives < 1 or self.identities < 2:
            raise CalibrationError("a calibration needs positive pairs and at least two identities")

    @property
    def base_rate(self) -> float:
        """Fraction of same-identity pairs in the calibration set (the prior the probabilities hold at)."""
        return self.positives / (self.positives + self.negatives)

    def p_same(self, scores: np.ndarray) -> np.ndarray:
        """P(same person) per score, by linear interpolation between knots (constant beyond them)."""
        return np.interp(np.asarray(scores, dtype=np.float64), self.scores, self.probabilities)

    def threshold(self, far: float) -> float:
        """The smallest score whose false-accept rate on the calibration negatives is at most ``far``.

        A score ``s`` is accepted when ``s >= threshold``. Between the stored ranks the threshold is the next
        stored one above (a false-accept rate at most ``far``, never more).

        Raises:
            CalibrationError: ``far`` is not in (0, 1).
        """
        if not 0.0 < far < 1.0:
            raise CalibrationError(f"a false-accept rate must be in (0, 1), got {far}")
        allowed = math.floor(far * self.negatives)  # negatives that may score >= the threshold
        idx = int(np.searchsorted(np.asarray(self.negative_ranks), allowed + 1, side="right")) - 1
        return float(np.nextafter(np.float32(self.negative_scores[idx]), np.float32(np.inf)))

    def to_json(self) -> str:
        """Compact JSON of every field."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ScoreCalibration:
        """Parse what :meth:`to_json` wrote (after ``json.loads``).

        Raises:
            CalibrationError: keys are missing or values malformed.
        """
        try:
            return cls(
                scores=tuple(float(v) for v in raw["scores"]),
                probabilities=tuple(float(v) for v in raw["probabilities"]),
                negative_ranks=tuple(int(v) for v in raw["negative_ranks"]),
                negative_scores=tuple(float(v) for v in raw["negative_scores"]),
                positives=int(raw["positives"]),
                negatives=int(raw["negatives"]),
                identities=int(raw["identities"]),
            )
        except CalibrationError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"malformed score calibration: {exc!r}") from exc


def fit_calibration(
    positive_scores: np.ndarray, negative_scores: np.ndarray, identities: int, seed: int = 0
) -> ScoreCalibration:
    """Fit the map on same-identity (positive) and different-identity (negative) pair scores.

    Beyond ``MAX_FIT_PAIRS`` pairs PAV runs on a stratified random sample (the same fraction of each class, so the
    base rate is kept); the false-accept tail always uses every negative.

    Raises:
        CalibrationError: a class has no pairs or a score is not finite.
    """
    pos = np.asarray(positive_scores, dtype=np.float32).ravel()
    neg = np.asarray(negative_scores, dtype=np.float32).ravel()
    if not (pos.size and neg.size):
        raise CalibrationError(f"need same- and different-identity pairs (got {pos.size} and {neg.size})")
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))):
        raise CalibrationError("pair scores must be finite")
    fraction = min(1.0, MAX_FIT_PAIRS / (pos.size + neg.size))
    rng = np.random.default_rng(seed)
    fit_pos, fit_neg = (_sample(s, fraction, rng) for s in (pos, neg))
    x = np.concatenate([fit_pos, fit_neg])
    y = np.concatenate([np.ones(fit_pos.size), np.zeros(fit_neg.size)])
    xs, ps = pool_adjacent_violators(x, y)
    ranks = np.unique(np.round(np.geomspace(1, neg.size, NEGATIVE_RANKS_KEPT)).astype(np.int64))
    descending = -np.sort(-neg)
    return ScoreCalibration(
        scores=tuple(float(v) for v in xs),
        probabilities=tuple(float(v) for v in ps),
        negative_ranks=tuple(int(r) for r in ranks),
        negative_scores=tuple(float(descending[r - 1]) for r in ranks),
        positives=int(pos.size),
        negatives=int(neg.size),
        identities=int(identities),
    )


def _sample(values: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``fraction`` of ``values`` (at least one), without replacement."""
    if fraction >= 1.0:
        return values
    return rng.choice(values, size=max(1, round(fraction * values.size)), replace=False)
