"""Cross-modal identity sampler: row alignment, K per id per modality, coverage, determinism, DDP shards."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.modality import Modality
from model.config import NetConfig
from training.config import AugmentConfig
from training.data.base import Sample
from training.samplers import IdentitySampler, PairedBatchDataset
from training.transforms import build_train_transform

# 10 identities; visible counts 3..12 images, infrared 2..6 (id 0 has fewer than K = 4 infrared images)
VIS_PIDS = [p for p in range(10) for _ in range(3 + p)]
IR_PIDS = [p for p in range(10) for _ in range(2 + p // 2)]


def _sampler(**kw: object) -> IdentitySampler:
    args: dict[str, object] = {"num_ids": 3, "num_instances": 4, "seed": 7}
    args.update(kw)
    return IdentitySampler(VIS_PIDS, IR_PIDS, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["agw", "identities"])
def test_rows_are_aligned_and_each_id_has_k_per_modality(mode: str) -> None:
    sampler = _sampler(epoch_mode=mode, with_replacement=False)
    vis, ir = np.asarray(VIS_PIDS), np.asarray(IR_PIDS)
    for batch in sampler.batches():
        np.testing.assert_array_equal(vis[batch.vis], batch.pids)
        np.testing.assert_array_equal(ir[batch.ir], batch.pids)
        counts = Counter(batch.pids.tolist())
        assert len(counts) == 3 and set(counts.values()) == {4}
        # ids are in contiguous blocks of K rows
        assert all(len(set(batch.pids[k * 4 : (k + 1) * 4])) == 1 for k in range(3))
        # without replacement wherever an id has >= K images
        for pid in counts:
            rows = batch.pids == pid
            if (vis == pid).sum() >= 4:
                assert len(set(batch.vis[rows])) == 4
            if (ir == pid).sum() >= 4:
                assert len(set(batch.ir[rows])) == 4


def test_images_are_drawn_with_replacement_as_in_agw() -> None:
    """AGW draws an id's K images with ``np.random.choice(pos, K)`` (replace=True): for an id with n >= K images
    the K draws are all distinct with probability n!/((n-K)! n^K); the sampler's rate matches it."""
    sampler = _sampler(num_instances=4, num_ids=3)
    vis = np.asarray(VIS_PIDS)
    distinct: dict[int, list[bool]] = {}
    for epoch in range(60):
        sampler.set_epoch(epoch)
        for batch in sampler.batches():
            for pid in np.unique(batch.pids):
                distinct.setdefault(int(pid), []).append(len(set(batch.vis[batch.pids == pid])) == 4)
    for pid, flags in distinct.items():
        n = int((vis == pid).sum())
        expected = float(np.prod([(n - j) / n for j in range(4)]))
        assert abs(np.mean(flags) - expected) < 4 * np.sqrt(expected * (1 - expected) / len(flags)) + 0.02, pid
    assert sum(not f for flags in distinct.values() for f in flags) > 100  # repeats happen for ids with >= K


def test_epoch_length_and_identity_coverage() -> None:
    agw = _sampler()
    assert len(agw) == max(len(VIS_PIDS), len(IR_PIDS)) // 12 + 1 == 7
    ident = _sampler(epoch_mode="identities")
    assert len(ident) == 10 // 3
    seen = np.concatenate([np.unique(b.pids) for b in ident.batches()])
    assert len(seen) == len(set(seen.tolist())) == 9  # each id at most once; 9 of 10 ids (one left over)
    # across epochs every id is reached
    covered = set()
    for epoch in range(5):
        ident.set_epoch(epoch)
        covered |= {int(p) for b in ident.batches() for p in b.pids}
    assert covered == set(range(10))


def test_deterministic_per_seed_and_epoch() -> None:
    a, b = _sampler(), _sampler()
    a.set_epoch(3)
    b.set_epoch(3)
    pairs = zip(a.batches(), b.batches(), strict=True)
    assert all(np.array_equal(x.vis, y.vis) and np.array_equal(x.ir, y.ir) for x, y in pairs)
    b.set_epoch(4)
    assert not all(np.array_equal(x.vis, y.vis) for x, y in zip(a.batches(), b.batches(), strict=True))
    c = _sampler(seed=8)
    c.set_epoch(3)
    assert not all(np.array_equal(x.vis, y.vis) for x, y in zip(a.batches(), c.batches(), strict=True))


def test_state_dict_resumes_the_same_stream() -> None:
    a = _sampler()
    a.set_epoch(5)
    b = _sampler(seed=0)
    b.load_state_dict(a.state_dict())
    assert [x.vis.tolist() for x in a.batches()] == [x.vis.tolist() for x in b.batches()]
    with pytest.raises(ValueError, match="num_ids"):
        _sampler(num_ids=2).load_state_dict(a.state_dict())


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_are_disjoint_and_equal_sized(world_size: int) -> None:
    full = _sampler(epoch_mode="agw", seed=1)
    shards = [_sampler(epoch_mode="agw", seed=1, rank=r, world_size=world_size) for r in range(world_size)]
    all_batches = [(tuple(b.vis), tuple(b.ir)) for b in full.all_batches()]
    got = [[(tuple(b.vis), tuple(b.ir)) for b in s.batches()] for s in shards]
    assert {len(g) for g in got} == {len(full.all_batches()) // world_size}
    flat = [b for g in got for b in g]
    positions = [all_batches.index(b) for b in flat]
    assert len(set(positions)) == len(flat)  # no batch given to two ranks
    for r, g in enumerate(got):  # rank r holds batches r, r + W, ...
        assert [all_batches.index(b) for b in g] == list(range(r, r + world_size * len(g), world_size))


def test_single_modality_identity_is_rejected() -> None:
    with pytest.raises(ValueError, match="only one modality"):
        IdentitySampler([0, 1, 2], [0, 1], num_ids=2, num_instances=1)


def _tree(tmp_path: Path) -> tuple[list[Sample], list[Sample]]:
    rng = np.random.default_rng(0)
    vis, ir = [], []
    for pid in range(4):
        for k in range(3):
            for modality, out in ((Modality.VISIBLE, vis), (Modality.INFRARED, ir)):
                path = tmp_path / f"{modality.value}_{pid}_{k}.png"
                Image.fromarray(rng.integers(0, 255, (20, 10, 3), dtype=np.uint8)).save(path)
                out.append(Sample(path=path, pid=pid, camid=1, modality=modality))
    return vis, ir


def test_paired_dataset_is_reproducible_and_aligned(tmp_path: Path) -> None:
    vis, ir = _tree(tmp_path)
    net = NetConfig(input_height=16, input_width=8)
    transform = build_train_transform(net, AugmentConfig(pad=2))

    def make() -> PairedBatchDataset:
        s = IdentitySampler([x.pid for x in vis], [x.pid for x in ir], num_ids=2, num_instances=2, seed=3)
        return PairedBatchDataset(vis, ir, s, transform)

    ds1, ds2 = make(), make()
    ds1.set_epoch(2)
    torch.manual_seed(123)  # the global RNG state must not matter
    v1, i1, p1 = ds1[1]
    ds2.set_epoch(2)
    torch.manual_seed(999)
    v2, i2, p2 = ds2[1]
    assert v1.shape == (4, 3, 16, 8) and i1.shape == (4, 3, 16, 8)
    assert torch.equal(v1, v2) and torch.equal(i1, i2) and torch.equal(p1, p2)
    assert torch.equal(p1, torch.from_numpy(ds1.sampler.batches()[1].pids))
    ds2.set_epoch(3)
    assert not torch.equal(ds2[1][0], v1)
