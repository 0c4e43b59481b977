"""The standard pictures of a re-identification evaluation: CMC curves and ranked-list figures (PNG, Agg).

Figures are drawn on ``matplotlib.figure.Figure`` objects (the Agg canvas, no pyplot state, no display needed).
``write_plots`` takes the evaluation splits with their distance matrices (``eval_loop.split_distances``) and
writes ``cmc.png`` (rank 1-20, one curve per setting or direction, averaged over its trials) and one
``ranked_<setting>.png`` per setting: queries of its first trial and their top-10 gallery crops, a green border
for the query's identity and red for another, after the protocol's removals (SYSU-MM01: a camera-3 query skips
camera-2 gallery images; LLCM: the query's identity seen by the query's camera).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from common.preprocess import load_image
from training.data.base import EvalSplit, Sample
from training.metrics import split_metrics

CORRECT = "#1a9641"  # green
WRONG = "#d7191c"  # red
QUERY = "#2b83ba"  # blue
MAX_RANK = 20


def mean_cmc(split_dists: Sequence[tuple[EvalSplit, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{setting: cmc}`` (fractions, ranks 1..20), each averaged over the setting's trials."""
    per_group: dict[str, list[np.ndarray]] = defaultdict(list)
    for split, distmat in split_dists:
        per_group[split.group].append(split_metrics(distmat, split, MAX_RANK)[0])
    return {group: np.mean(curves, axis=0) for group, curves in per_group.items()}


def plot_cmc(curves: dict[str, np.ndarray], path: Path, title: str = "CMC") -> Path:
    """One CMC curve (percent against rank) per setting, Rank-1 in the legend; writes a PNG."""
    fig = Figure(figsize=(6, 4.5), dpi=100)
    ax = fig.add_subplot()
    for group, cmc in curves.items():
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, 100 * cmc, marker="o", markersize=3, label=f"{group} (R1 {100 * cmc[0]:.1f})")
    ax.set(xlabel="rank", ylabel="matching rate (%)", title=title, xlim=(1, MAX_RANK), ylim=(0, 100.5))
    ax.set_xticks([1, 5, 10, 15, 20])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def removed(split: EvalSplit, query: Sample) -> np.ndarray:
    """Gallery entries the split's protocol drops for ``query`` (boolean, gallery order)."""
    g_cams = np.array([s.camid for s in split.gallery])
    if split.protocol == "sysu" and query.camid == 3:
        return g_cams == 2
    if split.protocol == "llcm":
        g_pids = np.array([s.pid for s in split.gallery])
        return (g_pids == query.pid) & (g_cams == query.camid)
    return np.zeros(len(split.gallery), dtype=bool)


def pick_queries(split: EvalSplit, count: int) -> list[int]:
    """``count`` query rows of distinct identities, evenly spread over the sorted identities (deterministic)."""
    first_of: dict[int, int] = {}
    for i, s in enumerate(split.query):
        first_of.setdefault(s.pid, i)
    pids = sorted(first_of)
    picks = np.linspace(0, len(pids) - 1, num=min(count, len(pids))).round().astype(int)
    return [first_of[pids[k]] for k in dict.fromkeys(picks.tolist())]


def _show(ax: Axes, sample: Sample, colour: str, caption: str) -> None:
    ax.imshow(np.asarray(load_image(sample.path)))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4)
    ax.set_title(caption, fontsize=7, color=colour)


def plot_ranked_lists(split: EvalSplit, distmat: np.ndarray, path: Path, num_queries: int = 4, top_k: int = 10) -> Path:
    """A row per query: the query crop, then its ``top_k`` gallery crops bordered green (match) or red; a PNG."""
    queries = pick_queries(split, num_queries)
    fig = Figure(figsize=(1.1 * (top_k + 1), 2.1 * len(queries)), dpi=100)
    axes = fig.subplots(len(queries), top_k + 1, squeeze=False)
    for row, q in enumerate(queries):
        query = split.query[q]
        _show(axes[row, 0], query, QUERY, f"query id {query.pid}\ncam {query.camid}")
        order = np.argsort(distmat[q], kind="stable")
        order = order[~removed(split, query)[order]][:top_k]
        for col in range(top_k):
            ax = axes[row, col + 1]
            if col >= len(order):
                ax.axis("off")
                continue
            hit = split.gallery[order[col]]
            colour = CORRECT if hit.pid == query.pid else WRONG
            _show(ax, hit, colour, f"{col + 1}: id {hit.pid}\nd {distmat[q, order[col]]:.3f}")
    fig.suptitle(f"{split.name}: top-{top_k} (green: same identity, red: another)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_plots(split_dists: Sequence[tuple[EvalSplit, np.ndarray]], out_dir: Path, title: str = "CMC") -> list[Path]:
    """``cmc.png`` and ``ranked_<setting>.png`` (first trial of each setting) in ``out_dir``; returns the paths."""
    paths = [plot_cmc(mean_cmc(split_dists), out_dir / "cmc.png", title)]
    seen: set[str] = set()
    for split, distmat in split_dists:
        if split.group not in seen:
            seen.add(split.group)
            paths.append(plot_ranked_lists(split, distmat, out_dir / f"ranked_{split.group.replace('/', '_')}.png"))
    return paths
