"""``vireid demo``: the real chain (synth -> train -> export -> serve -> gallery -> queries), then a rerun reusing it.

Training is shortened with ``--set`` overrides (1 epoch of 2 iterations) so the chain runs in about a minute on
2 cores; the self-check numbers are then near chance and not asserted, the bookkeeping is.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest

from cli.demo import STEPS, DemoError, DemoOptions, Steps, demo_client, identity_crops, resolve_config
from cli.main import main
from tests.service.conftest import TinyModels
from tests.service.support import files, free_port, image_bytes, read_card
from training.data.sysu import INFRARED_CAMS, VISIBLE_CAMS

FAST = ["--set", "schedule.epochs=1", "--set", "run.max_iters=2", "--set", "run.eval_every=0"]


def write_sysu_tree(root: Path) -> None:
    """A minimal SYSU-MM01 layout: test ids 3 and 1 (id 2 is training), cameras 1 and 3, one missing folder."""
    (root / "exp").mkdir(parents=True)
    (root / "exp" / "test_id.txt").write_text("3,1\n")
    for cam, pid, name in [
        (1, 1, "0002.jpg"),
        (1, 1, "0001.jpg"),
        (1, 2, "0001.jpg"),
        (3, 1, "0001.jpg"),
        (3, 3, "0001.jpg"),
        (1, 3, "0001.jpg"),
    ]:
        (root / f"cam{cam}" / f"{pid:04d}").mkdir(parents=True, exist_ok=True)
        (root / f"cam{cam}" / f"{pid:04d}" / name).write_bytes(b"x")


def test_identity_crops_lists_test_ids_by_camera_group(tmp_path: Path) -> None:
    write_sysu_tree(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in identity_crops(tmp_path, VISIBLE_CAMS)] == [
        "cam1/0001/0001.jpg",
        "cam1/0001/0002.jpg",
        "cam1/0003/0001.jpg",
    ]
    assert [p.relative_to(tmp_path).as_posix() for p in identity_crops(tmp_path, INFRARED_CAMS)] == [
        "cam3/0001/0001.jpg",
        "cam3/0003/0001.jpg",
    ]
    with pytest.raises(DemoError, match="test_id.txt not found"):
        identity_crops(tmp_path / "cam1", VISIBLE_CAMS)


def test_missing_config_names_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match=r"nope\.yaml.*--config"):
        resolve_config(tmp_path / "nope.yaml")


def test_with_an_exported_api_key_the_demo_service_needs_it_and_the_demo_client_sends_it(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIREID_API_KEY", "demo-key")
    monkeypatch.setenv("VIREID_PROVIDERS", '["CPUExecutionProvider"]')
    monkeypatch.setenv("VIREID_INTRA_OP_THREADS", "1")
    port = free_port()
    steps = Steps(DemoOptions(workdir=tmp_path / "demo", port=port))
    steps.workdir.mkdir()
    tiny_models.copy_to(steps.models)
    (steps.data / "exp").mkdir(parents=True)
    (steps.data / "exp" / "test_id.txt").write_text("1,2\n")
    for pid in (1, 2):
        folder = steps.data / "cam1" / f"{pid:04d}"
        folder.mkdir(parents=True)
        (folder / "0001.jpg").write_bytes(image_bytes(pid, fmt="JPEG"))
    url = f"http://127.0.0.1:{port}"
    process, _ = steps.start_service(url, "model-key")
    try:
        with demo_client(url) as client:
            assert steps.fill_gallery(client, "model-key") == {"vis": 2, "ir": 0}
        keyless = httpx.post(f"{url}/gallery", params={"modality": "vis"}, files=files(image_bytes(3)), timeout=60)
        assert keyless.status_code == 401, "the service the demo started takes the exported key"
    finally:
        process.terminate()
        assert process.wait(30) in (0, -signal.SIGTERM)


def run_demo(workdir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``vireid demo --exit-after-setup`` on a free port; its standard output."""
    argv = [
        "demo",
        "--workdir",
        str(workdir),
        "--port",
        str(free_port()),
        "--queries",
        "4",
        "--exit-after-setup",
        *FAST,
    ]
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    return capsys.readouterr().out


@pytest.mark.slow
def test_demo_sets_everything_up_then_reuses_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "demo"
    out = run_demo(workdir, capsys)
    headers = re.findall(r"^\[(\d)/(\d)\] (\w+): ", out, flags=re.MULTILINE)
    assert headers == [(str(i), str(len(STEPS)), step) for i, step in enumerate(STEPS, start=1)], out
    for step in ("synth", "train", "export"):
        assert (workdir / "logs" / f"{step}.log").read_text().startswith("$ "), "each step's full output is kept"
    assert not [line for line in out.splitlines() if "onnx_ir" in line or "onnxscript" in line], "exporter noise"
    visible = identity_crops(workdir / "data", VISIBLE_CAMS)
    assert len(visible) > 50
    assert f"gallery: {len(visible)} visible, 0 infrared crops" in out
    assert sorted(p.name for p in (workdir / "models").iterdir()) == ["encoder_ir.onnx", "encoder_vis.onnx"]
    calibration = read_card(workdir / "models" / "encoder_vis.onnx").calibration  # the demo's service judges matches
    assert calibration is not None and calibration.identities == 40

    check = re.search(r"self-check: (\d+)/(\d+) infrared queries", out)
    assert check and int(check.group(2)) == 4
    rows = re.findall(r"^  (ok  |miss) id (\d{4}) -> top (\d{4}) ", out, flags=re.MULTILINE)
    assert len(rows) == 4 and int(check.group(1)) == sum(hit == "ok  " and pid == top for hit, pid, top in rows)

    queries = re.findall(r"-F file=@(\S+) '(http://127\.0\.0\.1:\d+)/search\?modality=ir&top_k=5'", out)
    assert queries, out
    page = re.search(r"^web page: (http://127\.0\.0\.1:\d+)/  \(.* such as (\S+)\)$", out, flags=re.MULTILINE)
    assert page and page.group(1) == queries[0][1] and page.group(2) == queries[0][0], out
    for image, _url in queries:
        path = Path(image)
        assert path.is_absolute() and path.is_file()
        assert path.parent.parent.name in {f"cam{c}" for c in INFRARED_CAMS}

    again = run_demo(workdir, capsys)
    assert "done by an earlier run" in again and "[2/5] train: done by an earlier run" in again
    assert "reused steps: synth, train, export, gallery" in again
    assert f"gallery: {len(visible)} visible, 0 infrared crops" in again, "a rerun must not add the crops twice"
