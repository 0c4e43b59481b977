"""k-reciprocal re-ranking against a dense transcription of the public ``re_ranking.py`` (Zhong et al., CVPR 2017)."""

from __future__ import annotations

import numpy as np
import pytest

from index.kreciprocal import KReciprocalParams, candidate_set, rerank_distmat, rerank_probe, top_rows


def zhong_re_ranking(
    q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3
) -> np.ndarray:
    """The public code's algorithm on the full (queries + gallery)^2 matrix, loop for loop (the reference)."""
    original = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    )
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(1.0 * original / np.max(original, axis=0))
    v = np.zeros_like(original).astype(np.float32)
    initial_rank = np.argsort(original).astype(np.int32)
    query_num = q_g_dist.shape[0]
    all_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    for i in range(all_num):
        forward = initial_rank[i, : k1 + 1]
        backward = initial_rank[forward, : k1 + 1]
        k_reciprocal = forward[np.where(backward == i)[0]]
        expansion = k_reciprocal
        for candidate in k_reciprocal:
            half = int(np.around(k1 / 2.0))
            c_forward = initial_rank[candidate, : half + 1]
            c_backward = initial_rank[c_forward, : half + 1]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, k_reciprocal)) > 2.0 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        v[i, expansion] = 1.0 * weight / np.sum(weight)
    original = original[:query_num,]
    if k2 != 1:
        v_qe = np.zeros_like(v, dtype=np.float32)
        for i in range(all_num):
            v_qe[i, :] = np.mean(v[initial_rank[i, :k2], :], axis=0)
        v = v_qe
    inv_index = [np.where(v[:, i] != 0)[0] for i in range(all_num)]
    jaccard = np.zeros_like(original, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        non_zero = np.where(v[i, :] != 0)[0]
        images = [inv_index[ind] for ind in non_zero]
        for j in range(len(non_zero)):
            temp_min[0, images[j]] = temp_min[0, images[j]] + np.minimum(v[i, non_zero[j]], v[images[j], non_zero[j]])
        jaccard[i] = 1 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lam) + original * lam
    return final[:query_num, query_num:]


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances of unit rows (the public code's input)."""
    return np.sqrt(np.maximum(2.0 - 2.0 * (a @ b.T), 0.0))


def clustered(n_ids: int, views: int, dim: int, seed: int, noise: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors, ``views`` noisy views of each of ``n_ids`` identities (centres from seed 0), and their ids."""
    centres = np.random.default_rng(0).standard_normal((n_ids, dim))
    pids = np.repeat(np.arange(n_ids), views)
    x = centres[pids] + noise * np.random.default_rng(seed).standard_normal((len(pids), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), pids


@pytest.mark.parametrize(("k1", "k2", "lam"), [(20, 6, 0.3), (7, 1, 0.5), (5, 3, 0.0)])
def test_one_probe_over_the_whole_gallery_equals_the_public_code(k1: int, k2: int, lam: float) -> None:
    gallery, _ = clustered(12, 6, 16, seed=0)
    probes, _ = clustered(12, 1, 16, seed=1)
    for probe in probes[:4]:
        want = zhong_re_ranking(
            euclidean(probe[None], gallery), np.zeros((1, 1)), euclidean(gallery, gallery), k1, k2, lam
        )[0]
        got = rerank_probe(probe, gallery, KReciprocalParams(k1, k2, lam))
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_bounded_distmat_equals_the_public_code_when_the_candidates_cover_the_gallery() -> None:
    gallery, _ = clustered(10, 5, 16, seed=2)
    queries, _ = clustered(10, 1, 16, seed=3)
    got = rerank_distmat(queries, gallery, candidates=len(gallery), chunk=3)
    zero = np.zeros((1, 1))
    g_g = euclidean(gallery, gallery)
    want = np.vstack([zhong_re_ranking(euclidean(q[None], gallery), zero, g_g) for q in queries])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_bounded_candidates_rank_first_and_the_rest_keep_their_cosine_order() -> None:
    gallery, _ = clustered(30, 5, 16, seed=4)
    query, _ = clustered(1, 1, 16, seed=5)
    dist = rerank_distmat(query, gallery, KReciprocalParams(k1=4, k2=2), candidates=5)[0]
    scores = gallery @ query[0]
    top = top_rows(scores[None], 5)[0]
    members = candidate_set(top, top_rows(gallery @ gallery.T, 5)[top])
    assert set(np.argsort(dist)[: len(members)]) == set(members.tolist())
    assert len(members) < len(gallery)
    rest = np.setdiff1d(np.arange(len(gallery)), members)
    np.testing.assert_allclose(dist[rest], 3.0 - scores[rest], rtol=1e-6)
    assert dist[members].max() <= 1.0 < dist[rest].min()


def test_rerank_lifts_the_mean_average_precision_on_clustered_views() -> None:
    gallery, g_pids = clustered(40, 6, 32, seed=6, noise=1.6)
    queries, q_pids = clustered(40, 1, 32, seed=7, noise=1.6)  # fresh views of the gallery's identities
    before = 1.0 - queries @ gallery.T
    after = rerank_distmat(queries, gallery, candidates=60)

    def mean_ap(dist: np.ndarray) -> float:
        aps = []
        for row, pid in zip(dist, q_pids, strict=True):
            hits = g_pids[np.argsort(row, kind="stable")] == pid
            aps.append(np.mean(np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)))
        return float(np.mean(aps))

    assert mean_ap(after) > mean_ap(before) + 0.02


def test_candidate_set_keeps_first_occurrences_in_order_and_skips_missing() -> None:
    got = candidate_set(np.array([5, 2]), np.array([[5, 7, -1], [2, 5, 9]]))
    assert got.tolist() == [5, 2, 7, 9]


def test_top_rows_orders_best_first_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [1.0, 0.0, 0.0, 0.0]])
    assert top_rows(scores, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    assert top_rows(scores, 10).shape == (2, 4)


def test_bad_parameters_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="k1 and k2"):
        KReciprocalParams(k1=0)
    with pytest.raises(ValueError, match="lambda"):
        KReciprocalParams(lam=1.5)
    with pytest.raises(ValueError, match="probe must be"):
        rerank_probe(np.ones(3), np.ones((4, 2)))
    assert rerank_probe(np.ones(2) / np.sqrt(2), np.zeros((0, 2))).shape == (0,)
