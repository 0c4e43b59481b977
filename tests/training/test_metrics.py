"""CMC / mAP / mINP of the community protocols: hand-worked cases, brute-force definitions, the public code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.modality import Modality
from tests.training.agw_reference import ref_eval_llcm, ref_eval_regdb, ref_eval_sysu
from training.data.base import EvalSplit, Sample
from training.metrics import NoValidQueryError, eval_llcm, eval_regdb, eval_sysu, split_metrics


def test_eval_sysu_hand_worked() -> None:
    """Two queries, five gallery images (pid/cam): g0 1/2, g1 2/1, g2 1/1, g3 3/4, g4 2/2.

    q0 (pid 1, cam 3), distances 0.1..0.5 -> ranked g0 g1 g2 g3 g4; cam-3 query drops cam-2 g0, g4.
        kept g1(2) g2(1) g3(3): hits 0 1 0. Distinct ids 2,1,3 -> found at rank 2. AP = (1/2)/1, INP = 1/2.
    q1 (pid 2, cam 6), ranked g2(1) g3(3) g4(2) g1(2) g0(1), nothing dropped: hits 0 0 1 1 0.
        distinct ids 1,3,2 -> rank 3. AP = (1/3 + 2/4)/2 = 5/12, INP = 2/4.
    CMC (max_rank 5) = [0, 1/2, 1, 1, 1] (only 3 distinct ids: the curve stays at 1 past them);
    mAP = (1/2 + 5/12)/2 = 11/24; mINP = 1/2.
    """
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.1, 0.2, 0.3]])
    q_pids, q_cams = np.array([1, 2]), np.array([3, 6])
    g_pids, g_cams = np.array([1, 2, 1, 3, 2]), np.array([2, 1, 1, 4, 2])

    cmc, mAP, mINP = eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=5)

    np.testing.assert_allclose(cmc, [0.0, 0.5, 1.0, 1.0, 1.0])
    assert mAP == pytest.approx(11 / 24)
    assert mINP == pytest.approx(0.5)
    ref_cmc, ref_mAP, ref_mINP = ref_eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=3)
    np.testing.assert_allclose(cmc[:3], ref_cmc, rtol=1e-6)
    assert (mAP, mINP) == pytest.approx((ref_mAP, ref_mINP), rel=1e-12)


def test_eval_regdb_hand_worked() -> None:
    """Gallery pids [1, 2, 1, 3]; a third query (pid 9) has no match and is skipped.

    q0 (pid 1), distances [.3 .1 .2 .4] -> ranked g1(2) g2(1) g0(1) g3(3): hits 0 1 1 0, first hit at 2,
        AP = (1/2 + 2/3)/2 = 7/12, INP = 2/3.
    q1 (pid 3), ranked g0 g1 g2 g3: hits 0 0 0 1 -> rank 4, AP = 1/4, INP = 1/4.
    CMC (max_rank 4) = [0, 1/2, 1/2, 1]; mAP = (7/12 + 3/12)/2 = 5/12; mINP = (2/3 + 1/4)/2 = 11/24.
    """
    distmat = np.array([[0.3, 0.1, 0.2, 0.4], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    q_pids, g_pids = np.array([1, 3, 9]), np.array([1, 2, 1, 3])

    cmc, mAP, mINP = eval_regdb(distmat, q_pids, g_pids, max_rank=4)

    np.testing.assert_allclose(cmc, [0.0, 0.5, 0.5, 1.0])
    assert mAP == pytest.approx(5 / 12)
    assert mINP == pytest.approx(11 / 24)


def test_eval_llcm_hand_worked() -> None:
    """q0 (pid 1, cam 2); gallery g0 1/cam2, g1 2/cam2, g2 1/cam5 at distances .1 .2 .3.

    LLCM drops only same pid *and* same camera (g0): kept g1(2) g2(1) -> rank 2, AP = 1/2, INP = 1/2,
    CMC (max_rank 3) = [0, 1, 1]. SYSU's rule drops nothing here (not a cam-3 query): hits at 1 and 3,
    AP = (1 + 2/3)/2 = 5/6.
    """
    distmat = np.array([[0.1, 0.2, 0.3]])
    args = (np.array([1]), np.array([1, 2, 1]), np.array([2]), np.array([2, 2, 5]))

    cmc, mAP, mINP = eval_llcm(distmat, *args, max_rank=3)
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0])
    assert (mAP, mINP) == pytest.approx((0.5, 0.5))
    assert eval_sysu(distmat, *args, max_rank=3)[1] == pytest.approx(5 / 6)


def test_ties_are_broken_by_gallery_index() -> None:
    """All distances equal: the ranking is the gallery order, so hits at positions 2 and 3 of 3."""
    q_pids = np.array([1])
    cmc, mAP, mINP = eval_regdb(np.zeros((1, 3)), q_pids, np.array([2, 1, 1]), max_rank=3)
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0])
    assert (mAP, mINP) == pytest.approx(((1 / 2 + 2 / 3) / 2, 2 / 3))
    cmc, mAP, _ = eval_regdb(np.zeros((1, 3)), q_pids, np.array([1, 1, 2]), max_rank=3)
    np.testing.assert_allclose(cmc, [1.0, 1.0, 1.0])
    assert mAP == pytest.approx(1.0)


def test_cmc_has_max_rank_entries_for_a_tiny_gallery() -> None:
    """Two gallery images, max_rank 20: the public code would return 2 entries; ours pads with the last value."""
    cmc, _, _ = eval_regdb(np.array([[0.2, 0.1]]), np.array([1]), np.array([1, 2]), max_rank=20)
    np.testing.assert_allclose(cmc, [0.0] + [1.0] * 19)


def test_no_valid_query_raises() -> None:
    with pytest.raises(NoValidQueryError):
        eval_sysu(np.zeros((1, 2)), np.array([5]), np.array([1, 2]), np.array([3]), np.array([1, 1]))
    with pytest.raises(NoValidQueryError):  # the only match is a cam-2 image, dropped for a cam-3 query
        eval_sysu(np.zeros((1, 2)), np.array([1]), np.array([1, 2]), np.array([3]), np.array([2, 1]))


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="g_pids has 2 entries"):
        eval_regdb(np.zeros((1, 3)), np.array([1]), np.array([1, 2]))
    with pytest.raises(ValueError, match="2-D"):
        eval_regdb(np.zeros(3), np.array([1]), np.array([1, 2, 3]))


def _brute_force(distmat, q_pids, g_pids, removed, distinct, max_rank):  # type: ignore[no-untyped-def]
    """The definitions of docs/method.md §5, one query and one gallery entry at a time."""
    ranks, aps, inps = [], [], []
    for q in range(distmat.shape[0]):
        ranked = sorted(range(distmat.shape[1]), key=lambda j, q=q: (distmat[q, j], j))
        kept = [j for j in ranked if not removed(q, j)]
        hits = [g_pids[j] == q_pids[q] for j in kept]
        if not any(hits):
            continue
        positions = [i + 1 for i, hit in enumerate(hits) if hit]
        aps.append(np.mean([n / p for n, p in enumerate(positions, start=1)]))
        inps.append(len(positions) / positions[-1])
        if distinct:
            seen: list[int] = []
            for j in kept:
                if g_pids[j] not in seen:
                    seen.append(g_pids[j])
            ranks.append(seen.index(q_pids[q]) + 1)
        else:
            ranks.append(positions[0])
    cmc = np.array([np.mean([r <= k for r in ranks]) for k in range(1, max_rank + 1)])
    return cmc, float(np.mean(aps)), float(np.mean(inps))


def _random_case(rng: np.random.Generator, num_q: int, num_g: int, num_ids: int, ties: bool):  # type: ignore[no-untyped-def]
    distmat = rng.integers(0, 4, (num_q, num_g)).astype(float) if ties else rng.random((num_q, num_g))
    q_pids = rng.integers(0, num_ids, num_q) * 7 + 3  # arbitrary, non-contiguous ids
    g_pids = rng.integers(0, num_ids, num_g) * 7 + 3
    q_cams = rng.choice([3, 6], num_q)
    g_cams = rng.choice([1, 2, 4, 5], num_g)
    q_pids[0] = g_pids[0]  # at least one query has a match
    q_cams[0] = 6
    return distmat, q_pids, g_pids, q_cams, g_cams


def _sysu_rule(qc, gc):  # type: ignore[no-untyped-def]
    return lambda q, j: qc[q] == 3 and gc[j] == 2


def _llcm_rule(qp, gp, qc, gc):  # type: ignore[no-untyped-def]
    return lambda q, j: qp[q] == gp[j] and qc[q] == gc[j]


@pytest.mark.parametrize("ties", [False, True])
def test_matches_brute_force_definitions(ties: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        num_q, num_g = int(rng.integers(1, 12)), int(rng.integers(1, 25))
        d, qp, gp, qc, gc = _random_case(rng, num_q, num_g, int(rng.integers(1, 8)), ties)
        max_rank = int(rng.integers(1, 30))
        sysu_rm, llcm_rm = _sysu_rule(qc, gc), _llcm_rule(qp, gp, qc, gc)
        cases = [
            (eval_sysu(d, qp, gp, qc, gc, max_rank), _brute_force(d, qp, gp, sysu_rm, True, max_rank)),
            (eval_llcm(d, qp, gp, qc, gc, max_rank), _brute_force(d, qp, gp, llcm_rm, True, max_rank)),
            (eval_regdb(d, qp, gp, max_rank), _brute_force(d, qp, gp, lambda q, j: False, False, max_rank)),
        ]
        for (cmc, mAP, mINP), (b_cmc, b_mAP, b_mINP) in cases:
            assert cmc.shape == (max_rank,)
            np.testing.assert_allclose(cmc, b_cmc, rtol=1e-12)
            assert (mAP, mINP) == pytest.approx((b_mAP, b_mINP), rel=1e-12)


def _distinct_kept(d, qp, gp, removed):  # type: ignore[no-untyped-def]
    """Fewest distinct gallery ids any query keeps: the public code needs max_rank <= this."""
    return min(len({gp[j] for j in range(d.shape[1]) if not removed(q, j)}) for q in range(d.shape[0]))


@pytest.mark.parametrize("num_q", [7, 600])  # 600 > one block of queries
def test_equals_public_protocol_code_on_tie_free_inputs(num_q: int) -> None:
    rng = np.random.default_rng(num_q)
    for _ in range(40 if num_q < 100 else 2):
        num_g = int(rng.integers(20, 70))
        d, qp, gp, qc, gc = _random_case(rng, num_q, num_g, int(rng.integers(10, 40)), ties=False)
        d = d.astype(np.float32) if rng.random() < 0.5 else d
        sysu_m = min(20, _distinct_kept(d, qp, gp, _sysu_rule(qc, gc)))
        llcm_m = min(20, _distinct_kept(d, qp, gp, _llcm_rule(qp, gp, qc, gc)))
        pairs = [
            (eval_sysu(d, qp, gp, qc, gc, 20), ref_eval_sysu(d, qp, gp, qc, gc, sysu_m), sysu_m),
            (eval_llcm(d, qp, gp, qc, gc, 20), ref_eval_llcm(d, qp, gp, qc, gc, llcm_m), llcm_m),
            (eval_regdb(d, qp, gp, 20), ref_eval_regdb(d, qp, gp, 20), min(20, num_g)),
        ]
        for (cmc, mAP, mINP), (r_cmc, r_mAP, r_mINP), m in pairs:
            np.testing.assert_allclose(cmc[:m], r_cmc, rtol=1e-6, atol=1e-7)
            assert (mAP, mINP) == pytest.approx((float(r_mAP), float(r_mINP)), rel=1e-12)


def test_evaluate_split_uses_the_protocol_of_its_data_set() -> None:
    def samples(pids: list[int], cams: list[int], modality: Modality) -> tuple[Sample, ...]:
        return tuple(Sample(Path(f"{i}.jpg"), p, c, modality) for i, (p, c) in enumerate(zip(pids, cams, strict=True)))

    query = samples([1, 2], [3, 6], Modality.INFRARED)
    gallery = samples([1, 2, 1, 3, 2], [2, 1, 1, 4, 2], Modality.VISIBLE)
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.1, 0.2, 0.3]])

    cmc, mAP, _ = split_metrics(distmat, EvalSplit("sysu", "all", 0, query, gallery), max_rank=5)
    np.testing.assert_allclose(cmc, [0.0, 0.5, 1.0, 1.0, 1.0])
    assert mAP == pytest.approx(11 / 24)
    regdb = split_metrics(distmat, EvalSplit("regdb", "vis2ir", 1, query, gallery), max_rank=5)
    assert regdb[1] == pytest.approx(eval_regdb(distmat, np.array([1, 2]), np.array([1, 2, 1, 3, 2]))[1])
    with pytest.raises(ValueError, match="no evaluation protocol"):
        split_metrics(distmat, EvalSplit("market", "x", 0, query, gallery))  # type: ignore[arg-type]
