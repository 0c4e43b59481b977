"""ONNX Runtime encoders, one per modality; the only module of the project that imports onnxruntime."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, ModelCard, encoder_filename
from common.providers import CUDA_PROVIDER, TENSORRT_PROVIDER
from service.tensorrt import TensorrtOptions

logger = logging.getLogger(__name__)


class EncoderLoadError(RuntimeError):
    """An encoder file is missing, malformed, or cannot run on any requested provider."""


class EncoderMismatchError(EncoderLoadError):
    """The two modality encoders of a deployment disagree (model version, embedding dim or modality)."""


def resolve_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """Keep the requested providers this onnxruntime build offers, in the requested order.

    Raises:
        EncoderLoadError: none of the requested providers is available.
    """
    usable = [p for p in requested if p in available]
    if not usable:
        raise EncoderLoadError(
            f"none of the requested providers {list(requested)} is available in this onnxruntime build "
            f"(available: {list(available)}); set VIREID_PROVIDERS to a subset of the available ones"
        )
    return usable


class OnnxEncoder:
    """One exported encoder: float32 ``(N, 3, H, W)`` images in [0, 1] -> L2-normalised ``(N, D)`` embeddings.

    The input size and everything else about the model come from the ``ModelCard`` in the file's metadata.
    """

    def __init__(
        self,
        path: Path,
        providers: Sequence[str],
        intra_op_threads: int = 0,
        spinning: bool = False,
        tensorrt: TensorrtOptions | None = None,
    ) -> None:
        """Open ``path`` on the first usable provider of ``providers`` and read its ModelCard.

        ``tensorrt`` configures TensorrtExecutionProvider when ``providers`` lists it (default options otherwise).

        Raises:
            EncoderLoadError: the file is missing, lacks metadata, or has unexpected input/output names.
        """
        if not path.is_file():
            raise EncoderLoadError(
                f"encoder {path} not found; export one with `python -m training.export` or set VIREID_MODEL_DIR"
            )
        available = ort.get_available_providers()
        usable = resolve_providers(providers, available)
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        # Spinning threads keep cores busy after each run, starving HTTP parsing and decoding on shared cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.path = path
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=with_provider_options(usable, path, tensorrt)
        )
        self.providers: list[str] = list(self.session.get_providers())
        self._warn_on_tensorrt_fallback(providers, available)
        self._warn_on_cuda_fallback(providers, available)
        try:
            self.card = ModelCard.from_metadata(self.session.get_modelmeta().custom_metadata_map)
        except ValueError as exc:
            raise EncoderLoadError(f"{path}: {exc}") from exc
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [ONNX_INPUT_NAME] or ONNX_OUTPUT_NAME not in outputs:
            raise EncoderLoadError(
                f"{path} has inputs {inputs} and outputs {outputs}; expected input {ONNX_INPUT_NAME!r} and output "
                f"{ONNX_OUTPUT_NAME!r}; re-export with `python -m training.export`"
            )
        logger.info(
            "loaded %s encoder %s (model %s, dim %d, %s, input %dx%d) on %s",
            self.card.modality,
            path,
            self.card.model_version,
            self.card.embedding_dim,
            self.card.precision,
            self.card.input_height,
            self.card.input_width,
            self.providers,
        )

    def _warn_on_tensorrt_fallback(self, requested: Sequence[str], available: Sequence[str]) -> None:
        if TENSORRT_PROVIDER not in requested or TENSORRT_PROVIDER in self.providers:
            return
        logger.warning(
            "TensorRT was requested but %s runs on %s: %s; check that the GPU image is used "
            "(the tensorrt-cu13-libs package) and a GPU is visible",
            self.path,
            self.providers,
            "its libraries failed to load or no GPU is visible"
            if TENSORRT_PROVIDER in available
            else f"this onnxruntime build lacks it (available: {list(available)})",
        )

    def _warn_on_cuda_fallback(self, requested: Sequence[str], available: Sequence[str]) -> None:
        if CUDA_PROVIDER not in requested or CUDA_PROVIDER in self.providers:
            return
        if CUDA_PROVIDER in available:
            logger.warning(
                "CUDA was requested and this onnxruntime build has it, but %s runs on %s: CUDA/cuDNN libraries "
                "are missing or no GPU is visible; inference is on CPU",
                self.path,
                self.providers,
            )
        else:
            logger.warning(
                "CUDA was requested but this onnxruntime build lacks it (available: %s); %s runs on %s",
                list(available),
                self.path,
                self.providers,
            )

    @property
    def modality(self) -> Modality:
        """Modality this encoder was exported for."""
        return self.card.modality

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed float32 ``(N, 3, H, W)`` images in [0, 1]; returns float32 ``(N, embedding_dim)``."""
        expected = (3, self.card.input_height, self.card.input_width)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(
                f"expected images of shape (N, {expected[0]}, {expected[1]}, {expected[2]}), got {images.shape}"
            )
        batch = np.ascontiguousarray(images, dtype=np.float32)
        out = self.session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: batch})[0]
        return np.asarray(out, dtype=np.float32)


def with_provider_options(
    providers: Sequence[str], model: Path, tensorrt: TensorrtOptions | None
) -> list[str | tuple[str, dict[str, str]]]:
    """The provider list for ``InferenceSession``, TensorRT given its options for ``model``.

    Raises:
        EncoderLoadError: TensorRT is listed and its cache directory cannot be created.
    """
    trt = tensorrt or TensorrtOptions(cache_dir=Path("trt-cache"))  # the VIREID_TRT_* defaults
    try:
        return [(p, trt.provider_options(model)) if p == TENSORRT_PROVIDER else p for p in providers]
    except OSError as exc:
        raise EncoderLoadError(
            f"cannot create the TensorRT engine cache in {trt.cache_dir} ({exc}); set VIREID_TRT_CACHE_DIR to a "
            "writable directory (a persistent volume: engines take minutes to build)"
        ) from exc


def load_encoders(
    model_dir: Path,
    providers: Sequence[str],
    intra_op_threads: int = 0,
    spinning: bool = False,
    tensorrt: TensorrtOptions | None = None,
) -> dict[Modality, OnnxEncoder]:
    """Open ``encoder_vis.onnx`` and ``encoder_ir.onnx`` in ``model_dir`` and check they belong together.

    Raises:
        EncoderLoadError: a file is missing or unreadable.
        EncoderMismatchError: the files disagree on model version or embedding dim, or carry the wrong modality.
    """
    encoders = {
        m: OnnxEncoder(model_dir / encoder_filename(m), providers, intra_op_threads, spinning, tensorrt)
        for m in Modality
    }
    for modality, encoder in encoders.items():
        if encoder.card.modality is not modality:
            raise EncoderMismatchError(
                f"{encoder.path} says it encodes {encoder.card.modality.value!r} images but is named for "
                f"{modality.value!r}; re-export the model directory with `python -m training.export`"
            )
    vis, ir = encoders[Modality.VISIBLE].card, encoders[Modality.INFRARED].card
    if (vis.model_version, vis.embedding_dim, vis.precision) != (ir.model_version, ir.embedding_dim, ir.precision):
        raise EncoderMismatchError(
            f"encoders in {model_dir} do not belong together: visible is model {vis.model_version} "
            f"(dim {vis.embedding_dim}, {vis.precision}), infrared is model {ir.model_version} "
            f"(dim {ir.embedding_dim}, {ir.precision}); "
            "export both from the same checkpoint"
        )
    return encoders
