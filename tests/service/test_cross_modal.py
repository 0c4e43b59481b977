"""End to end on the synthetic set: the trained tiny model behind the service finds identities across modalities.

Visible test crops (one per identity and visible camera, trial 0 of the SYSU-MM01 protocol) go into the gallery
through POST /gallery with their identity as label; every infrared test image is searched through POST /search.
The service must return exactly the ranking that the PyTorch model gives for the same files (same top-1 for
every query without a near-tie), and must rank the right identity first for most queries.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from common.modality import Modality
from common.preprocess import load_image, to_input
from service.settings import Settings
from tests.conftest import TRAINING_TIMEOUT, ExportedModels
from tests.service.support import serve
from training.data.sysu import process_gallery_sysu, process_query_sysu

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(TRAINING_TIMEOUT)]

# configs/tiny.yaml reaches rank-1 ~0.65 here against 0.025 chance (docs/results.md); the bound is the issue's
# "most queries", with room for machine-dependent float differences in training.
MIN_RANK1 = 0.5


def _torch_embed(models: ExportedModels, paths: list[str], modality: Modality, size: tuple[int, int]) -> np.ndarray:
    batch = np.stack([to_input(load_image(p), *size) for p in paths])
    with torch.no_grad():
        return models.graphs[modality](torch.from_numpy(batch)).numpy()


async def test_infrared_queries_find_their_identity(
    trained_exported: ExportedModels, synth_root: Path, tmp_path: Path
) -> None:
    g_paths, g_pids, _ = process_gallery_sysu(synth_root, "all", trial=0)
    q_paths, q_pids, _ = process_query_sysu(synth_root, "all")
    settings = Settings(
        model_dir=trained_exported.model_dir, data_dir=tmp_path / "gallery", providers=("CPUExecutionProvider",)
    )
    ids: list[int] = []
    served_top1: list[int] = []
    async with serve(settings) as (_, client):
        for start in range(0, len(g_paths), 16):
            chunk = list(range(start, min(start + 16, len(g_paths))))
            upload = [("files", (Path(g_paths[i]).name, Path(g_paths[i]).read_bytes(), "image/jpeg")) for i in chunk]
            metadata = "[" + ",".join(f'{{"label": "{int(g_pids[i])}"}}' for i in chunk) + "]"
            r = await client.post("/gallery", params={"modality": "vis"}, files=upload, data={"metadata": metadata})
            assert r.status_code == 201, r.text
            ids.extend(r.json()["ids"])
        correct = 0
        for path, pid in zip(q_paths, q_pids, strict=True):
            query = [("file", (Path(path).name, Path(path).read_bytes(), "image/jpeg"))]
            r = await client.post("/search", params={"modality": "ir", "top_k": 1}, files=query)
            (match,) = r.json()["matches"]
            assert match["metadata"]["modality"] == "vis"
            served_top1.append(match["id"])
            correct += match["metadata"]["label"] == str(int(pid))
    cfg = trained_exported.graphs[Modality.VISIBLE].net.cfg
    size = (cfg.input_height, cfg.input_width)
    q = _torch_embed(trained_exported, q_paths, Modality.INFRARED, size)
    g = _torch_embed(trained_exported, g_paths, Modality.VISIBLE, size)
    scores = q @ g.T
    best = scores.argmax(axis=1)
    top2 = np.sort(scores, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    clear = margin > 1e-4  # near-ties may flip between ONNX Runtime and PyTorch; every other query must agree
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(np.asarray(served_top1)[clear], np.asarray(ids)[best][clear])
    rank1 = correct / len(q_paths)
    logging.getLogger(__name__).info("served rank-1 %.3f on %d infrared queries", rank1, len(q_paths))
    assert rank1 > MIN_RANK1, f"rank-1 {rank1:.3f} on {len(q_paths)} queries"
