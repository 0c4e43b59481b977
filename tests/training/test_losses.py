"""Losses on hand-made cases (values worked out in the docstrings)."""

from __future__ import annotations

import math

import pytest
import torch

from model.net import TrainOutput
from training.config import LossConfig
from training.losses import batch_hard_triplet, compute_losses, cross_modal_triplet, dcl_loss, id_loss


def test_id_loss_uniform_logits_is_log_c() -> None:
    """Zero logits give p = 1/C for every class, so CE = log C with or without smoothing."""
    logits = [torch.zeros(6, 5), torch.zeros(6, 5)]
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    assert id_loss(logits, targets, 0.1).item() == pytest.approx(math.log(5), abs=1e-6)


def test_id_loss_label_smoothing_and_stripe_average() -> None:
    """Two classes, logits (log 3, 0): p = (3/4, 1/4). Target 0 with eps = 0.1:
    CE = (1 - eps) * -log(3/4) + eps * mean(-log 3/4, -log 1/4) = 0.9*0.287682 + 0.1*(0.287682 + 1.386294)/2
       = 0.258914 + 0.083699 = 0.342613.
    A second stripe with zero logits has CE = log 2 = 0.693147; the average is 0.517880.
    """
    s1 = torch.tensor([[math.log(3.0), 0.0]])
    s2 = torch.zeros(1, 2)
    target = torch.tensor([0])
    assert id_loss([s1], target, 0.1).item() == pytest.approx(0.342613, abs=1e-5)
    assert id_loss([s1, s2], target, 0.1).item() == pytest.approx(0.517880, abs=1e-5)
    assert id_loss([s1], target, 0.0).item() == pytest.approx(-math.log(0.75), abs=1e-6)


def test_batch_hard_triplet_hand_case() -> None:
    """1-D features x = (0, 1, 3, 4), pids (0, 0, 1, 1), margin 0.3.
    Anchor 0: hardest pos d(0,1) = 1, hardest neg d(0,3) = 3 -> max(0, 1 - 3 + 0.3) = 0.
    Anchor 1: pos 1, neg d(1,3) = 2 -> 0.   Anchor 2: pos 1, neg d(3,1) = 2 -> 0.   Anchor 3: pos 1, neg 3 -> 0.
    Now pids (0, 1, 0, 1): anchor 0: pos d(0,3) = 3, neg d(0,1) = 1 -> 2.3; anchor 1: pos d(1,4) = 3,
    neg min(d(1,0), d(1,3)) = 1 -> 2.3; anchor 2 (x=3): pos 3, neg d(3,4) = 1 -> 2.3; anchor 3 (x=4): pos 3,
    neg d(4,3) = 1 -> 2.3. Mean = 2.3.
    """
    x = torch.tensor([[0.0], [1.0], [3.0], [4.0]])
    assert batch_hard_triplet(x, torch.tensor([0, 0, 1, 1]), 0.3).item() == pytest.approx(0.0, abs=1e-5)
    assert batch_hard_triplet(x, torch.tensor([0, 1, 0, 1]), 0.3).item() == pytest.approx(2.3, abs=1e-5)


def test_batch_hard_triplet_2d() -> None:
    """Points a=(0,0) b=(3,4) pid 0, c=(0,1) d=(6,8) pid 1, margin 0.3.
    a: pos d(a,b)=5, neg min(d(a,c)=1, d(a,d)=10)=1 -> 4.3.  b: pos 5, neg min(d(b,c)=sqrt(9+9)=4.242641,
    d(b,d)=5)=4.242641 -> 1.057359.  c: pos d(c,d)=sqrt(36+49)=9.219544, neg min(1, 4.242641)=1 -> 8.519544.
    d: pos 9.219544, neg min(10, 5)=5 -> 4.519544.  Mean = (4.3+1.057359+8.519544+4.519544)/4 = 4.599112.
    """
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])
    assert batch_hard_triplet(x, torch.tensor([0, 0, 1, 1]), 0.3).item() == pytest.approx(4.599112, abs=1e-4)


def test_cross_modal_triplet_mines_over_the_union_and_averages_pairs() -> None:
    """V = (0, 3), I = (1, 4) (1-D), pids (0, 1). Union (V, I): x = (0, 3, 1, 4), pids (0, 1, 0, 1).
    Every anchor's farthest positive is 1 away and its closest negative at least 2 away -> loss 0.
    With V' = (4, 1) (identities swapped), union (I, V'): x = (1, 4, 4, 1), pids (0, 1, 0, 1): every anchor has
    its hardest positive 3 away and a negative at 0 -> 3 - 0 + 0.3 = 3.3. Average of [0, 3.3] = 1.65.
    """
    v = torch.tensor([[0.0], [3.0]])
    i = torch.tensor([[1.0], [4.0]])
    v_swapped = torch.tensor([[4.0], [1.0]])
    pids = torch.tensor([0, 1])
    streams = {"V": v, "I": i, "Vs": v_swapped}
    assert cross_modal_triplet(streams, pids, (("V", "I"),), 0.3).item() == pytest.approx(0.0, abs=1e-5)
    assert cross_modal_triplet(streams, pids, (("V", "I"), ("I", "Vs")), 0.3).item() == pytest.approx(1.65, abs=1e-4)


def test_dcl_loss_mean_l2_distance() -> None:
    """Rows (3,4) vs (0,0) -> 5; (1,1) vs (1,1) -> 0; mean 2.5."""
    va = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    ia = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert dcl_loss(va, ia).item() == pytest.approx(2.5)


def _output(streams: tuple[str, ...], feats: list[list[float]], dcl: list[list[float]] | None) -> TrainOutput:
    n_rows = len(feats)
    return TrainOutput(
        streams=streams,
        logits=[torch.zeros(n_rows, 3)],
        feats=torch.tensor(feats),
        dcl=None if dcl is None else torch.tensor(dcl),
    )


def test_compute_losses_with_amg_weights_the_terms() -> None:
    """N = 2 rows per stream, pids (0, 1), 1-D features per stream: V = (0, 3), V_aux = (0, 3), I = (1, 4),
    I_aux = (4, 1) (identities swapped). Triplet pairs: (V,I) 0; (V,I_aux): union x = (0,3,4,1), pids (0,1,0,1):
    anchor 0: pos 4, neg min(3, 1) = 1 -> 3.3; anchor 3: pos 2, neg min(3, 1) = 1 -> 1.3; anchor 4: pos 4,
    neg 1 -> 3.3; anchor 1: pos 2, neg 1 -> 1.3; mean 2.3. (V_aux,I) = 0, (V_aux,I_aux) = 2.3; triplet = 1.15.
    ID: zero logits over 3 classes -> log 3. DCL (rows [V_aux, I_aux] only): V_aux (1,0), (0,1) vs I_aux (0,1), (0,1) ->
    distances sqrt(2), 0 -> mean 0.707107. Total = log 3 + 1.15 + 0.5 * 0.707107 = 2.602166.
    """
    feats = [[0.0], [3.0], [0.0], [3.0], [1.0], [4.0], [4.0], [1.0]]
    dcl = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    out = _output(("V", "V_aux", "I", "I_aux"), feats, dcl)
    losses = compute_losses(out, torch.tensor([0, 1]), LossConfig())
    assert losses["id"].item() == pytest.approx(math.log(3), abs=1e-6)
    assert losses["triplet"].item() == pytest.approx(1.15, abs=1e-4)
    assert losses["dcl"].item() == pytest.approx(math.sqrt(2) / 2, abs=1e-6)
    assert losses["total"].item() == pytest.approx(math.log(3) + 1.15 + 0.5 * math.sqrt(2) / 2, abs=1e-4)


def test_compute_losses_without_amg_uses_v_i_only() -> None:
    """V = (0, 3), I = (4, 1): union (0,3,4,1), pids (0,1,0,1) -> triplet 2.3 (as above); DCL is 0."""
    out = _output(("V", "I"), [[0.0], [3.0], [4.0], [1.0]], None)
    losses = compute_losses(out, torch.tensor([0, 1]), LossConfig(triplet_weight=2.0))
    assert losses["triplet"].item() == pytest.approx(2.3, abs=1e-4)
    assert losses["dcl"].item() == 0.0
    assert losses["total"].item() == pytest.approx(math.log(3) + 2 * 2.3, abs=1e-4)
