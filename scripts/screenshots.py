"""Screenshots of the web page for the README, taken in Debian's chromium by Playwright.

They are docs/img/ui-search.png, ui-gallery.png, ui-add.png and ui-details.png.

Usage, after ``scripts/demo.sh`` (which leaves its trained tiny model in ``demo/models`` and the synthetic set in
``demo/data``):

    PYTHONPATH=. .venv/bin/python scripts/screenshots.py --model-dir demo/models --data demo/data --out docs/img

or, without training, on the untrained network of ``configs/tiny.yaml`` (random init, seed 0: its ranking means
nothing) and a synthetic set written by ``python -m training.synth --out demo/data``:

    PYTHONPATH=. .venv/bin/python scripts/screenshots.py --untrained --data demo/data --out docs/img

Starts its own service (``vireid serve``, a fresh gallery in a temporary directory, an API key), adds the visible
test crops of the synthetic set as the demo does and the infrared crops of the first test identities, then
drives the page: an infrared search (the first test identity's first infrared crop, not a chosen one), the
details of its best match, the gallery view, and an upload through the add view.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from cli.client import ImageItem, make_client, upload
from cli.demo import identity_crops, wait_ready
from common.modality import Modality
from training.data.sysu import INFRARED_CAMS, VISIBLE_CAMS

VIEWPORT = {"width": 1280, "height": 820}
IR_GALLERY_IDS = 6  # identities whose infrared crops join the gallery (so that the gallery view shows both)
ADDED_IN_SHOT = 4  # infrared crops uploaded through the page for the add view's screenshot
UNTRAINED_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def crop_items(paths: list[Path], root: Path) -> list[ImageItem]:
    """Upload items labelled as the demo labels them: identity folder, camera folder, path in the set."""
    return [
        ImageItem(p, label=p.parent.name, camera=p.parent.parent.name, source=str(p.relative_to(root))) for p in paths
    ]


def wait_for_images(page: Page) -> None:
    """Wait until every image of the page has loaded or given up (the thumbnails are fetched one by one)."""
    page.wait_for_function("() => [...document.images].every((img) => img.src && img.complete)")


def take(page: Page, url: str, data: Path, key: str, out: Path) -> None:
    """Drive the page through its views and save one screenshot of each."""
    ir_crops = identity_crops(data, INFRARED_CAMS)
    page.goto(f"{url}/")
    page.get_by_label("API key", exact=True).fill(key)
    search = page.get_by_role("tabpanel", name="Search")
    search.get_by_label("Query image", exact=True).set_input_files(ir_crops[0])
    search.get_by_label("Modality", exact=True).select_option("ir")
    search.get_by_role("button", name="Search").click()
    matches = page.get_by_role("list", name="Matches").get_by_role("listitem")
    expect(matches).to_have_count(10)
    wait_for_images(page)
    page.screenshot(path=out / "ui-search.png", full_page=True)

    matches.first.get_by_role("button").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    wait_for_images(page)
    page.screenshot(path=out / "ui-details.png")
    page.get_by_role("button", name="Close").click()

    page.get_by_role("tab", name="Gallery").click()
    expect(page.get_by_role("list", name="Gallery items").get_by_role("listitem").first).to_be_visible()
    wait_for_images(page)
    page.screenshot(path=out / "ui-gallery.png")  # the first rows: the whole page is a large PNG

    page.get_by_role("tab", name="Add crops").click()
    add = page.get_by_role("tabpanel", name="Add crops")
    new = ir_crops[-ADDED_IN_SHOT:]
    add.get_by_label("Crops", exact=True).set_input_files(new)
    add.get_by_label("Modality", exact=True).select_option("ir")
    add.get_by_label("Label", exact=True).fill(new[0].parent.name)
    add.get_by_label("Camera", exact=True).fill(new[0].parent.parent.name)
    add.get_by_role("button", name="Add to gallery").click()
    expect(add.get_by_role("status")).to_contain_text(f"Added {ADDED_IN_SHOT} crops")
    page.screenshot(path=out / "ui-add.png")


def export_untrained(out: Path) -> Path:
    """Export ``configs/tiny.yaml``'s network with its random initial weights (the config's seed) to ``out``."""
    import torch  # noqa: PLC0415  (only this option needs torch)

    from model.net import VIReIDNet  # noqa: PLC0415
    from training.config import load_config  # noqa: PLC0415
    from training.export import export_encoders  # noqa: PLC0415

    cfg = load_config(UNTRAINED_CONFIG, [])
    torch.manual_seed(cfg.run.seed)
    net = VIReIDNet(cfg.model).eval()
    export_encoders(net, out, model_version="untrained-tiny", experiment=cfg.experiment, git_sha="screenshots")
    return out


def main(argv: list[str] | None = None) -> int:
    """Start a service on the given model and data, fill it, and save the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("demo/models"), help="encoder_{vis,ir}.onnx")
    parser.add_argument("--untrained", action="store_true", help="export configs/tiny.yaml's untrained network")
    parser.add_argument("--data", type=Path, default=Path("demo/data"), help="the synthetic set (training.synth)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="where the PNGs go")
    parser.add_argument("--port", type=int, default=8799, help="port of the temporary service on 127.0.0.1")
    parser.add_argument("--chromium", default=shutil.which("chromium"), help="the chromium executable")
    args = parser.parse_args(argv)
    if args.chromium is None:
        parser.error("chromium not found: install Debian's chromium package or pass --chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(12)
    url = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "service.log"
        env = {**os.environ, "VIREID_API_KEY": key, "VIREID_PROVIDERS": '["CPUExecutionProvider"]'}
        cmd = [sys.executable, "-m", "cli", "serve", "--port", str(args.port)]
        model_dir = export_untrained(Path(tmp) / "models") if args.untrained else args.model_dir
        cmd += ["--model-dir", str(model_dir), "--data-dir", str(Path(tmp) / "gallery")]
        with log_file.open("ab") as log:
            service = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(url, service, log_file)
            with make_client(url, key) as client:
                upload(client, crop_items(identity_crops(args.data, VISIBLE_CAMS), args.data), Modality.VISIBLE)
                ir = identity_crops(args.data, INFRARED_CAMS)
                first_ids = sorted({p.parent.name for p in ir})[:IR_GALLERY_IDS]
                ir = [p for p in ir if p.parent.name in first_ids]
                upload(client, crop_items(ir, args.data), Modality.INFRARED)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium)
                page = browser.new_page(viewport=VIEWPORT)
                take(page, url, args.data, key, args.out)
                browser.close()
        finally:
            service.terminate()
            service.wait(30)
    for name in ("ui-search", "ui-details", "ui-gallery", "ui-add"):
        print(args.out / f"{name}.png")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
