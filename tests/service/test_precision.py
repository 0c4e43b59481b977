"""The service loads whatever precision the model directory holds (int8, fp16) and /readyz says which."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.modality import Modality
from common.model_card import encoder_filename
from service.encoder import EncoderMismatchError, load_encoders
from service.settings import Settings
from tests.conftest import TRAINING_TIMEOUT
from tests.service.conftest import TinyModels
from tests.service.support import files, image_bytes, serve, with_settings

# slow: the int8/fp16 exports of the session fixture (tiny_reduced), built in the setup of the first test
pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(TRAINING_TIMEOUT)]


@pytest.mark.parametrize("precision", ["int8", "fp16"])
async def test_service_serves_each_precision_close_to_fp32(
    settings: Settings, tiny_models: TinyModels, tiny_reduced: dict[str, Path], precision: str
) -> None:
    payloads = [image_bytes(1), image_bytes(2, size=(40, 90))]
    async with serve(settings) as (_, client):
        reference = (await client.post("/embed", params={"modality": "ir"}, files=files(*payloads))).json()
        assert (await client.get("/readyz")).json()["precision"] == "fp32"
    reduced = with_settings(
        settings, model_dir=tiny_reduced[precision], data_dir=settings.data_dir.with_name(precision)
    )
    async with serve(reduced) as (_, client):
        ready = (await client.get("/readyz")).json()
        body = (await client.post("/embed", params={"modality": "ir"}, files=files(*payloads))).json()
    assert (ready["precision"], ready["embedding_dim"], ready["model_version"]) == (
        precision,
        tiny_models.card.embedding_dim,
        tiny_models.card.model_version,
    )
    got, expected = np.asarray(body["embeddings"]), np.asarray(reference["embeddings"])
    assert got.shape == expected.shape
    assert np.min(np.sum(got * expected, axis=1)) > (0.95 if precision == "int8" else 0.999)


async def test_encoders_of_two_precisions_are_not_a_pair(tiny_reduced: dict[str, Path], tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for modality, precision in ((Modality.VISIBLE, "int8"), (Modality.INFRARED, "fp16")):
        (mixed / encoder_filename(modality)).write_bytes(
            (tiny_reduced[precision] / encoder_filename(modality)).read_bytes()
        )
    with pytest.raises(EncoderMismatchError, match=r"visible is model .* int8\), infrared is model .* fp16\)"):
        load_encoders(mixed, ["CPUExecutionProvider"])
