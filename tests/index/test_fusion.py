"""Tracklet fusion: mean of normalised embeddings, renormalised."""

from __future__ import annotations

import numpy as np
import pytest

from index.fusion import FusionError, fuse_embeddings


def test_fused_query_ranks_by_the_average_cosine_to_the_crops() -> None:
    rng = np.random.default_rng(0)
    crops = rng.standard_normal((3, 8)) * np.array([[1.0], [5.0], [0.2]])  # lengths must not weigh
    gallery = rng.standard_normal((20, 8))
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    fused = fuse_embeddings(crops)
    assert fused.shape == (1, 8) and fused.dtype == np.float32
    assert np.linalg.norm(fused) == pytest.approx(1.0, abs=1e-6)
    unit = crops / np.linalg.norm(crops, axis=1, keepdims=True)
    mean_cosine = (gallery @ unit.T).mean(axis=1)
    np.testing.assert_allclose(gallery @ fused[0], mean_cosine / np.linalg.norm(unit.mean(axis=0)), atol=1e-5)
    assert np.argsort(-(gallery @ fused[0])).tolist() == np.argsort(-mean_cosine).tolist()


def test_one_embedding_is_its_own_query() -> None:
    x = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(fuse_embeddings(x), [[0.6, 0.8]], atol=1e-7)


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (np.zeros((0, 4)), "n >= 1"),
        (np.ones(4), "n >= 1"),
        (np.array([[1.0, np.nan]]), "non-finite"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), "zero length"),
        (np.array([[1.0, 0.0], [-1.0, 0.0]]), "cancel out"),
    ],
)
def test_inputs_that_cannot_form_one_query_are_refused(embeddings: np.ndarray, message: str) -> None:
    with pytest.raises(FusionError, match=message):
        fuse_embeddings(embeddings)
