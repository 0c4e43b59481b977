"""``bench/search.py --backend milvus`` at a tiny size: every backend measured, exact ones at recall 1."""

from __future__ import annotations

import re

import pytest

from bench.search import main


@pytest.mark.slow
def test_backend_benchmark_measures_every_backend_on_the_same_data(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--backend", "milvus", "--size", "600", "--dim", "16", "--queries", "20", "--latency-queries", "3"]
    main([*argv, "--chunk", "300", "--groups", "20", "--milvus-index", "FLAT", "HNSW", "--batch", "250"])
    rows = {
        m.group(1).strip(): float(m.group(2))
        for m in re.finditer(
            r"^(\S.*?)\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+[\d.]+x\s+-?[\d.]+$", capsys.readouterr().out, re.M
        )
    }
    exact = ["faiss exact (FaissGallery)", "milvus-lite FLAT", "milvus-server FLAT", "milvus-server FLAT Bounded reads"]
    assert sorted(rows) == sorted([*exact, "milvus-server HNSW"])
    assert all(rows[name] == 1.0 for name in exact), rows  # same data, same ground truth: exact search finds it all
    assert rows["milvus-server HNSW"] > 0.8
