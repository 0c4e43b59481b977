"""ModelCard: the self-description every exported encoder carries in its ONNX metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from common.calibration import CalibrationError, ScoreCalibration
from common.modality import Modality

METADATA_PREFIX = "vireid."
ONNX_INPUT_NAME = "images"
ONNX_OUTPUT_NAME = "embeddings"
PRECISIONS = ("fp32", "fp16", "int8")
# Fields added after the first exports: a file without them gets the default (an older fp32, unprojected export).
DEFAULTED_FIELDS = {"precision": "fp32", "projection": "none"}
OPTIONAL_FIELDS = ("calibration",)  # absent from the metadata when None (cards written before they existed)


def encoder_filename(modality: Modality) -> str:
    """File name of the ONNX encoder for one modality inside a model directory."""
    return f"encoder_{modality.value}.onnx"


class MissingMetadataError(ValueError):
    """An ONNX file lacks some of the ``vireid.*`` metadata keys of a ModelCard."""


@dataclass(frozen=True)
class ModelCard:
    """What an exported encoder computes and how its input must be prepared.

    The ONNX graph takes float32 images ``(N, 3, input_height, input_width)`` in [0, 1] (RGB, normalisation
    with ``mean``/``std`` happens inside the graph) and returns L2-normalised ``(N, embedding_dim)`` embeddings.
    ``precision`` is the arithmetic inside the graph (``fp32``, ``fp16`` for the CUDA provider, ``int8`` QDQ);
    ``projection`` names a projection baked in after the network (``none``, or e.g. ``pca 1024->256``), in which
    case ``embedding_dim`` is the projected dimension.
    """

    input_height: int
    input_width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embedding_dim: int
    modality: Modality
    model_version: str
    experiment: str
    git_sha: str
    calibration: ScoreCalibration | None = None  # cross-modal score -> P(same person), common.calibration
    precision: str = "fp32"
    projection: str = "none"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")

    def to_metadata(self) -> dict[str, str]:
        """Serialise to ``{"vireid.<field>": json}`` for ``onnx.helper.set_model_props`` (None optionals omitted)."""
        metadata = {
            METADATA_PREFIX + key: json.dumps(value)
            for key, value in asdict(self).items()
            if key not in OPTIONAL_FIELDS
        }
        if self.calibration is not None:
            metadata[METADATA_PREFIX + "calibration"] = self.calibration.to_json()
        return metadata

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> ModelCard:
        """Parse the ``vireid.*`` keys of an ONNX custom metadata map.

        Raises:
            MissingMetadataError: some keys are absent (all of them are named).
            CalibrationError: ``vireid.calibration`` is present but malformed.
        """
        names = [f.name for f in fields(cls) if f.name not in OPTIONAL_FIELDS]
        missing = [
            METADATA_PREFIX + n for n in names if METADATA_PREFIX + n not in metadata and n not in DEFAULTED_FIELDS
        ]
        if missing:
            raise MissingMetadataError(
                f"ONNX metadata lacks {', '.join(missing)}; re-export the model with `python -m training.export`"
            )
        raw = {n: json.loads(metadata.get(METADATA_PREFIX + n, json.dumps(DEFAULTED_FIELDS.get(n)))) for n in names}
        return cls(
            input_height=int(raw["input_height"]),
            input_width=int(raw["input_width"]),
            mean=_triple(raw["mean"]),
            std=_triple(raw["std"]),
            embedding_dim=int(raw["embedding_dim"]),
            modality=Modality(raw["modality"]),
            model_version=str(raw["model_version"]),
            experiment=str(raw["experiment"]),
            git_sha=str(raw["git_sha"]),
            calibration=_calibration(metadata.get(METADATA_PREFIX + "calibration")),
            precision=str(raw["precision"]),
            projection=str(raw["projection"]),
        )


def _calibration(value: str | None) -> ScoreCalibration | None:
    if value is None:
        return None
    try:
        raw = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"vireid.calibration is not JSON: {exc}") from exc
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise CalibrationError(f"vireid.calibration must be a JSON object, got {type(raw).__name__}")
    return ScoreCalibration.from_dict(raw)


def _triple(value: object) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) != 3:
        raise MissingMetadataError(f"expected a list of 3 floats, got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))
