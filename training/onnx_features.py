"""Embeddings of evaluation images by exported ONNX encoders (ONNX Runtime), to evaluate what is deployed.

``python -m training.evaluate --checkpoint C --onnx DIR`` scores the encoders in ``DIR`` (any precision, any
projection) on the checkpoint's evaluation splits; images are prepared as the service prepares uploads
(``common.preprocess``: RGB, bilinear resize to the card's size, [0, 1]; normalisation is inside the graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, encoder_filename
from common.preprocess import load_image, to_input
from common.providers import CPU_PROVIDER
from training.data.base import Sample
from training.precision import read_card


class OnnxEmbedder:
    """Both encoders of a model directory on the CPU provider: ``embed(samples)`` like ``embed_samples``."""

    def __init__(self, model_dir: Path, batch_size: int = 64) -> None:
        import onnxruntime as ort

        self.model_dir = model_dir
        self.batch_size = batch_size
        self.cards = {m: read_card(model_dir / encoder_filename(m)) for m in Modality}
        self.sessions = {
            m: ort.InferenceSession(str(model_dir / encoder_filename(m)), providers=[CPU_PROVIDER]) for m in Modality
        }

    @property
    def embedding_dim(self) -> int:
        """Length of an embedding (the cards agree)."""
        return self.cards[Modality.VISIBLE].embedding_dim

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        """Float32 ``(N, embedding_dim)`` embeddings of ``samples``, each by its own modality's encoder."""
        feats = np.zeros((len(samples), self.embedding_dim), dtype=np.float32)
        for modality, session in self.sessions.items():
            card = self.cards[modality]
            rows = [i for i, s in enumerate(samples) if s.modality is modality]
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                images = np.stack(
                    [to_input(load_image(samples[i].path), card.input_height, card.input_width) for i in chunk]
                )
                feats[chunk] = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images})[0]
        return feats
