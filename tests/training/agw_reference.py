"""The public VI-ReID protocol code, restated statement by statement, to test ours against.

Sources (MIT licence, Copyright (c) 2020 mangye16; the LLCM release builds on the same code):
- github.com/mangye16/Cross-Modal-Re-ID-baseline, ``eval_metrics.py`` (commit a903f427c5ed37e7bd8f0a8deb341187bba01395):
  ``eval_sysu``, ``eval_regdb``; ``data_manager.py`` (commit c667a1af665a92f136bc295b9179e26093899a28):
  ``process_query_sysu``, ``process_gallery_sysu``, ``process_test_regdb``.
- github.com/ZYK100/LLCM, ``AGW/eval_metrics.py`` (commit d62fc3a9d2c3cd4dc85934c17e9a5336af4b9a78): ``eval_llcm``;
  ``DEEN/data_manager.py`` (commit 35328778782fafd71250469f36a92f4af93734db): ``process_query_llcm``,
  ``process_gallery_llcm``, and ``process_gallery_sysu`` with its ``random.seed(trial)`` active (the stored copy of
  the AGW file has that line commented out; the released AGW protocol and docs/method.md seed it).

Each function performs the same numpy operations in the same order as the original (default ``np.argsort``,
float32 CMC accumulation, ``max_rank`` cut to the gallery size, the distinct-identity list built from
``np.unique(..., return_index=True)``, path-slicing of camera and identity); only the ``print`` of the originals
is dropped and names are ours. It reproduces the originals' failures too (ragged CMC lists when a ranked list has
fewer than ``max_rank`` distinct identities), so tests feed it inputs where the original works.
"""

from __future__ import annotations

import os
import random

import numpy as np


def ref_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """AGW ``eval_sysu``: cam-3 queries drop cam-2 gallery; distinct-identity CMC."""

    def removed(q_idx, order):
        return (q_camids[q_idx] == 3) & (g_camids[order] == 2)

    return _ref_distinct(distmat, q_pids, g_pids, removed, max_rank)


def ref_eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """LLCM ``eval_llcm``: drop same-identity same-camera gallery; distinct-identity CMC."""

    def removed(q_idx, order):
        return (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])

    return _ref_distinct(distmat, q_pids, g_pids, removed, max_rank)


def _ref_distinct(distmat, q_pids, g_pids, removed, max_rank):
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1)
    pred_label = g_pids[indices]
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    new_all_cmc, all_ap, all_inp = [], [], []
    num_valid_q = 0.0
    for q_idx in range(num_q):
        q_pid = q_pids[q_idx]
        keep = np.invert(removed(q_idx, indices[q_idx]))
        kept_labels = pred_label[q_idx][keep]
        first_index = np.unique(kept_labels, return_index=True)[1]
        distinct = [kept_labels[index] for index in sorted(first_index)]
        distinct_match = (distinct == q_pid).astype(np.int32)
        new_all_cmc.append(distinct_match.cumsum()[:max_rank])
        raw = matches[q_idx][keep]
        if not np.any(raw):
            continue
        ap, inp = _ref_ap_inp(raw)
        all_inp.append(inp)
        num_valid_q += 1.0
        all_ap.append(ap)
    assert num_valid_q > 0, "Error: all query identities do not appear in gallery"
    new_all_cmc = np.asarray(new_all_cmc).astype(np.float32)
    new_all_cmc = new_all_cmc.sum(0) / num_valid_q
    return new_all_cmc, np.mean(all_ap), np.mean(all_inp)


def _ref_ap_inp(raw):
    """AP and INP of one kept 0/1 match vector, as the original computes them."""
    cmc = raw.cumsum()
    pos_max_idx = np.max(np.where(raw == 1))
    inp = cmc[pos_max_idx] / (pos_max_idx + 1.0)
    num_rel = raw.sum()
    tmp_cmc = raw.cumsum()
    tmp_cmc = [x / (i + 1.0) for i, x in enumerate(tmp_cmc)]
    tmp_cmc = np.asarray(tmp_cmc) * raw
    return tmp_cmc.sum() / num_rel, inp


def ref_eval_regdb(distmat, q_pids, g_pids, max_rank=20):
    """AGW ``eval_regdb``: standard image CMC; its same-pid same-camera removal never fires (cams 1 vs 2)."""
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    num_valid_q = 0.0
    q_camids = np.ones(num_q).astype(np.int32)
    g_camids = 2 * np.ones(num_g).astype(np.int32)
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw = matches[q_idx][np.invert(remove)]
        if not np.any(raw):
            continue
        ap, inp = _ref_ap_inp(raw)
        all_inp.append(inp)
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.0
        all_ap.append(ap)
    assert num_valid_q > 0, "Error: all query identities do not appear in gallery"
    all_cmc = np.asarray(all_cmc).astype(np.float32)
    all_cmc = all_cmc.sum(0) / num_valid_q
    return all_cmc, np.mean(all_ap), np.mean(all_inp)


def _read_ids(file_path):
    with open(file_path) as file:
        ids = file.read().splitlines()
        ids = [int(y) for y in ids[0].split(",")]
        return ["%04d" % x for x in ids]  # noqa: UP031


def _collect(data_path, cameras, ids, pick_one):
    files = []
    for pid in sorted(ids):
        for cam in cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                if pick_one:
                    files.append(random.choice(new_files))
                else:
                    files.extend(new_files)
    return files


def _sysu_lists(files):
    cams = [int(p[-15]) for p in files]
    pids = [int(p[-13:-9]) for p in files]
    return files, np.array(pids), np.array(cams)


def ref_process_query_sysu(data_path, mode="all"):
    """AGW ``process_query_sysu``: all IR images (cams 3, 6) of the test ids, for both modes."""
    ids = _read_ids(os.path.join(data_path, "exp/test_id.txt"))
    return _sysu_lists(_collect(data_path, ["cam3", "cam6"], ids, pick_one=False))


def ref_process_gallery_sysu(data_path, mode="all", trial=0):
    """AGW ``process_gallery_sysu`` with ``random.seed(trial)``: one random image per test id and visible camera."""
    random.seed(trial)
    cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    ids = _read_ids(os.path.join(data_path, "exp/test_id.txt"))
    return _sysu_lists(_collect(data_path, cameras, ids, pick_one=True))


LLCM_VIS = [f"test_vis/cam{c}" for c in range(1, 10)]
LLCM_NIR = [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]


def _llcm_lists(files):
    cams = [int(p.split("cam")[1][0]) for p in files]
    pids = [int(p.split("cam")[1][2:6]) for p in files]
    return files, np.array(pids), np.array(cams)


def ref_process_query_llcm(data_path, mode=1):
    """LLCM ``process_query_llcm``: mode 1 all visible test images, mode 2 all near-infrared ones."""
    ids = _read_ids(os.path.join(data_path, "idx/test_id.txt"))
    return _llcm_lists(_collect(data_path, LLCM_VIS if mode == 1 else LLCM_NIR, ids, pick_one=False))


def ref_process_gallery_llcm(data_path, mode=1, trial=0):
    """LLCM ``process_gallery_llcm``: ``random.seed(trial)``, one image per test id and camera of the modality."""
    random.seed(trial)
    ids = _read_ids(os.path.join(data_path, "idx/test_id.txt"))
    return _llcm_lists(_collect(data_path, LLCM_VIS if mode == 1 else LLCM_NIR, ids, pick_one=True))


def ref_process_test_regdb(img_dir, trial=1, modal="visible"):
    """AGW ``process_test_regdb``: ``img_dir`` must end with a slash (the original concatenates strings)."""
    input_data_path = img_dir + f"idx/test_{modal}_{trial}.txt"
    data_file_list = open(input_data_path).read().splitlines()
    file_image = [img_dir + "/" + s.split(" ")[0] for s in data_file_list]
    file_label = [int(s.split(" ")[1]) for s in data_file_list]
    return file_image, np.array(file_label)
