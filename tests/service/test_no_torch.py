"""The serving side runs without torch: import and use the service in a clean interpreter, then check sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import TinyModels

SCRIPT = """
import asyncio, io, json, sys
import httpx
import numpy as np
from PIL import Image
from service.app import create_app
from service.settings import Settings

def png(seed):
    arr = np.random.default_rng(seed).integers(0, 256, (48, 24, 3), dtype=np.uint8)
    buf = io.BytesIO(); Image.fromarray(arr).save(buf, format="PNG"); return buf.getvalue()

async def main():
    settings = Settings(model_dir=sys.argv[1], data_dir=sys.argv[2], providers=("CPUExecutionProvider",))
    app = create_app(settings)
    statuses = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            statuses.append((await c.post("/embed", params={"modality": "vis"}, files={"files": png(1)})).status_code)
            r = await c.post("/gallery", params={"modality": "vis"}, files={"files": png(2)})
            statuses.append(r.status_code)
            statuses.append((await c.post("/search", params={"modality": "ir"}, files={"file": png(3)})).status_code)
            statuses.append((await c.delete(f"/gallery/{r.json()['ids'][0]}")).status_code)
            statuses.append((await c.get("/readyz")).status_code)
            statuses.append((await c.get("/metrics")).status_code)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "torchvision", "model", "training"})
    print(json.dumps({"statuses": statuses, "heavy": heavy}))

asyncio.run(main())
"""


def test_service_never_imports_torch(tiny_models: TinyModels, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_models.model_dir), str(tmp_path / "gallery")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200, 201, 200, 204, 200, 200]
    assert result["heavy"] == []
