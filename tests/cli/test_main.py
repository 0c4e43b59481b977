"""``vireid``: serve, gallery add, search and healthcheck against a real ``vireid serve`` subprocess on 127.0.0.1.

The server runs the tiny ONNX encoders of the service tests on a fresh gallery; the commands run in process
through ``cli.main.main`` and are checked against what the service then holds (labels, cameras, sources,
sha256 of the exact bytes) and against rankings recomputed from ``/embed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from cli.client import find_images, folder_items
from cli.demo import wait_ready
from cli.main import build_parser, format_matches, main
from common.modality import Modality
from index.fusion import fuse_embeddings
from index.kreciprocal import rerank_probe
from tests.service.conftest import TinyModels
from tests.service.support import free_port, image_bytes

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Server:
    """A running ``vireid serve`` and its base URL."""

    url: str
    process: subprocess.Popen[bytes]


def start_server(tiny_models: TinyModels, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    """``python -m cli serve`` on a free port with the tiny models and a fresh gallery, once ready."""
    port = free_port()
    log_file = tmp_path / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model-dir",
        str(tiny_models.model_dir),
        "--data-dir",
        str(tmp_path / "gallery"),
        "--cpu",
        "--log-level",
        "warning",
        *extra,
    ]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "VIREID_INTRA_OP_THREADS": "1", **(env or {})}
    with log_file.open("wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_file, timeout=120)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Server(url, process)


@pytest.fixture
def server(tiny_models: TinyModels, tmp_path: Path) -> Iterator[Server]:
    """A server without an API key."""
    srv = start_server(tiny_models, tmp_path)
    yield srv
    srv.process.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit status -SIGTERM
    assert srv.process.wait(30) in (0, -signal.SIGTERM)


def write_crops(root: Path) -> dict[str, bytes]:
    """A folder tree of person crops (plus a non-image file); returns relative path -> bytes of each image."""
    crops = {
        "0001/a.png": image_bytes(1, fmt="PNG"),
        "0001/b.jpg": image_bytes(2, fmt="JPEG"),
        "0002/c.png": image_bytes(3, fmt="PNG"),
        "site/0003/d.jpeg": image_bytes(4, fmt="JPEG"),
        "0003/e.PNG": image_bytes(5, size=(30, 60), mode="L", fmt="PNG"),
    }
    for relative, data in crops.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    (root / "0001" / "notes.txt").write_text("not an image")
    return crops


def gallery_items(url: str) -> list[dict]:
    """Every item the service holds."""
    return list(httpx.get(f"{url}/gallery", params={"limit": 1000}).json()["items"])


def embed(url: str, images: list[bytes], modality: Modality) -> np.ndarray:
    """Embeddings of ``images`` from the service's /embed."""
    files = [("files", (f"{i}.png", data, "application/octet-stream")) for i, data in enumerate(images)]
    answer = httpx.post(f"{url}/embed", params={"modality": modality.value}, files=files).json()
    return np.asarray(answer["embeddings"], dtype=np.float32)


def test_parser_accepts_modality_aliases_and_rejects_others() -> None:
    """The CLI takes exactly what the API takes (``Modality.parse``): wire names and every alias."""
    parser = build_parser()
    assert parser.parse_args(["search", "x.jpg", "--modality", "infrared"]).modality is Modality.INFRARED
    assert parser.parse_args(["gallery", "add", "d", "--modality", "VIS"]).modality is Modality.VISIBLE
    for alias, modality in [("thermal", Modality.INFRARED), ("nir", Modality.INFRARED), ("rgb", Modality.VISIBLE)]:
        assert parser.parse_args(["search", "x.jpg", "--modality", alias]).modality is modality
    with pytest.raises(SystemExit):
        parser.parse_args(["search", "x.jpg", "--modality", "uv"])
    with pytest.raises(SystemExit):
        parser.parse_args(["gallery", "add", "d", "--modality", "vis", "--label", "x", "--label-from-dir"])


def test_find_images_recurses_sorted_and_keeps_only_images(tmp_path: Path) -> None:
    crops = write_crops(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == sorted(crops)
    items = folder_items(tmp_path, find_images(tmp_path), label_from_dir=True, camera="cam9")
    assert [(i.label, i.source, i.camera) for i in items] == [
        (Path(rel).parent.name, rel, "cam9") for rel in sorted(crops)
    ]


@pytest.mark.slow
def test_gallery_add_uploads_a_tree_with_labels_from_folders(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crops = write_crops(tmp_path / "crops")
    argv = [
        "gallery",
        "add",
        str(tmp_path / "crops"),
        "--modality",
        "vis",
        "--label-from-dir",
        "--camera",
        "cam1",
        "--batch",
        "2",
        "--url",
        server.url,
    ]
    assert main(argv) == 0
    assert f"added {len(crops)} vis images" in capsys.readouterr().out
    items = {item["source"]: item for item in gallery_items(server.url)}
    assert set(items) == set(crops)
    for relative, data in crops.items():
        item = items[relative]
        assert item["modality"] == "vis" and item["camera"] == "cam1"
        assert item["label"] == Path(relative).parent.name
        assert item["sha256"] == hashlib.sha256(data).hexdigest(), "the exact file bytes must be uploaded"


@pytest.mark.slow
def test_gallery_add_reports_a_bad_file_and_adds_the_rest(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "crops"
    root.mkdir()
    (root / "good1.png").write_bytes(image_bytes(10))
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "good2.png").write_bytes(image_bytes(11))
    assert main(["gallery", "add", str(root), "--modality", "ir", "--label", "p7", "--url", server.url]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "415" in err
    items = gallery_items(server.url)
    assert sorted(i["source"] for i in items) == ["good1.png", "good2.png"]
    assert {(i["label"], i["modality"]) for i in items} == {("p7", "ir")}


@pytest.mark.slow
def test_search_prints_the_ranking_the_embeddings_give(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crops = write_crops(tmp_path / "crops")
    assert (
        main(["gallery", "add", str(tmp_path / "crops"), "--modality", "vis", "--label-from-dir", "--url", server.url])
        == 0
    )
    query = tmp_path / "query.png"
    query.write_bytes(image_bytes(42))
    capsys.readouterr()

    assert main(["search", str(query), "--modality", "ir", "--top-k", "3", "--json", "--url", server.url]) == 0
    result = json.loads(capsys.readouterr().out)
    by_source = {i["source"]: i["id"] for i in gallery_items(server.url)}
    sources = sorted(crops)
    scores = (
        embed(server.url, [crops[s] for s in sources], Modality.VISIBLE)
        @ embed(server.url, [query.read_bytes()], Modality.INFRARED)[0]
    )
    expected = [by_source[sources[i]] for i in np.argsort(-scores)[:3]]
    assert [m["id"] for m in result["matches"]] == expected
    np.testing.assert_allclose([m["score"] for m in result["matches"]], np.sort(scores)[::-1][:3], atol=1e-4)

    assert main(["search", str(query), "--modality", "ir", "--top-k", "3", "--url", server.url]) == 0
    table = capsys.readouterr().out
    assert table == format_matches(result) + "\n"
    rows = table.splitlines()[2:]
    assert [int(row.split()[2]) for row in rows] == expected
    assert rows[0].split()[0] == "1"

    # a tracklet (two crops of one person, fused) re-ranked by k-reciprocal encoding
    second = tmp_path / "query2.png"
    second.write_bytes(image_bytes(43))
    argv = ["search", str(query), str(second), "--modality", "ir", "--top-k", "5", "--rerank", "--url", server.url]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["query_images"], result["reranked"]) == (2, True)
    fused = fuse_embeddings(embed(server.url, [query.read_bytes(), second.read_bytes()], Modality.INFRARED))[0]
    gallery = embed(server.url, [crops[s] for s in sources], Modality.VISIBLE)
    order = np.argsort(rerank_probe(fused, gallery), kind="stable")
    assert [m["id"] for m in result["matches"]] == [by_source[sources[i]] for i in order]
    assert main(argv) == 0
    assert "2 query images fused (k-reciprocal re-ranked" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.slow
def test_writes_need_the_api_key_when_one_is_set(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = start_server(tiny_models, tmp_path, "--api-key", "s3cret")
    try:
        root = tmp_path / "crops"
        root.mkdir()
        (root / "a.png").write_bytes(image_bytes(1))
        base = ["gallery", "add", str(root), "--modality", "vis", "--url", srv.url]
        assert main(base) == 2
        assert "401" in capsys.readouterr().err
        assert main([*base, "--api-key", "wrong"]) == 2
        assert gallery_items(srv.url) == []
        assert main([*base, "--api-key", "s3cret"]) == 0
        assert [i["source"] for i in gallery_items(srv.url)] == ["a.png"]
    finally:
        srv.process.terminate()
        srv.process.wait(30)


@pytest.mark.slow
def test_search_sends_the_api_key_to_a_service_that_protects_reads(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"VIREID_AUTH_READS": "true", "VIREID_READ_API_KEY": "r-s3cret"}
    srv = start_server(tiny_models, tmp_path, "--api-key", "w-s3cret", env=env)
    try:
        root = tmp_path / "crops"
        root.mkdir()
        (root / "a.png").write_bytes(image_bytes(1))
        add = ["gallery", "add", str(root), "--modality", "vis", "--url", srv.url]
        assert main([*add, "--api-key", "r-s3cret"]) == 2
        assert "403 forbidden" in capsys.readouterr().err
        assert main([*add, "--api-key", "w-s3cret"]) == 0
        query = tmp_path / "query.png"
        query.write_bytes(image_bytes(1))
        search = ["search", str(query), "--modality", "ir", "--json", "--url", srv.url]
        capsys.readouterr()
        assert main(search) == 2
        assert "401 unauthorized" in capsys.readouterr().err
        assert main([*search, "--api-key", "wrong"]) == 2
        assert "401 unauthorized" in capsys.readouterr().err
        assert main([*search, "--api-key", "r-s3cret"]) == 0
        assert [m["metadata"]["source"] for m in json.loads(capsys.readouterr().out)["matches"]] == ["a.png"]
        monkeypatch.setenv("VIREID_API_KEY", "r-s3cret")  # the default of --api-key
        assert main(search) == 0
        assert [m["metadata"]["source"] for m in json.loads(capsys.readouterr().out)["matches"]] == ["a.png"]
    finally:
        srv.process.terminate()
        srv.process.wait(30)


@pytest.mark.slow
def test_healthcheck_exit_status(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["healthcheck", "--url", f"{server.url}/healthz"]) == 0
    assert main(["healthcheck", "--url", f"{server.url}/no-such-route"]) == 1
    assert main(["healthcheck", "--url", f"http://127.0.0.1:{free_port()}/healthz", "--timeout", "2"]) == 1
    assert "no answer" in capsys.readouterr().err


def test_commands_fail_cleanly_without_a_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "q.png"
    image.write_bytes(image_bytes(1))
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["search", str(image), "--modality", "ir", "--url", url]) == 2
    assert "cannot reach the service" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "missing.png"), "--modality", "ir", "--url", url]) == 2


@pytest.mark.slow
def test_second_serve_on_the_same_data_dir_exits_naming_the_first(
    server: Server, tiny_models: TinyModels, tmp_path: Path
) -> None:
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "serve",
            "--port",
            str(free_port()),
            "--model-dir",
            str(tiny_models.model_dir),
            "--data-dir",
            str(tmp_path / "gallery"),
            "--cpu",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0
    assert f"is in use by process {server.process.pid} " in second.stderr
    assert "shared backend" in second.stderr
    assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200  # the first keeps serving


def test_search_table_shows_p_same_when_the_service_sends_it() -> None:
    meta = {"label": "0042", "camera": "cam1", "source": "a.jpg"}
    result = {
        "query_modality": "ir",
        "target_modality": None,
        "model_version": "v1",
        "matches": [
            {"id": 7, "score": 0.81, "p_same": 0.934, "same_person": True, "metadata": meta},
            {"id": 9, "score": 0.52, "p_same": 0.0412, "same_person": False, "metadata": meta},
            {"id": 3, "score": 0.50, "p_same": None, "same_person": None, "metadata": meta},  # same modality
        ],
    }
    lines = format_matches(result).splitlines()
    assert lines[1].split() == ["rank", "score", "p_same", "same", "id", "label", "camera", "source"]
    assert [line.split()[:5] for line in lines[2:]] == [
        ["1", "0.8100", "0.934", "yes", "7"],
        ["2", "0.5200", "0.041", "no", "9"],
        ["3", "0.5000", "-", "-", "3"],
    ]
    for match in result["matches"]:
        match["p_same"] = match["same_person"] = None  # an uncalibrated model: the table as before
    assert format_matches(result).splitlines()[1].split() == ["rank", "score", "id", "label", "camera", "source"]
    assert format_matches(result).splitlines()[2].split()[:3] == ["1", "0.8100", "7"]
