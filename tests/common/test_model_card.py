import pytest

from common.modality import Modality
from common.model_card import MissingMetadataError, ModelCard, encoder_filename

CARD = ModelCard(
    input_height=384,
    input_width=192,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    embedding_dim=8192,
    modality=Modality.INFRARED,
    model_version="3f9c2a1b7d40",
    experiment="sysu-hagl-p4",
    git_sha="abc123",
)


def test_metadata_round_trip():
    metadata = CARD.to_metadata()
    assert metadata["vireid.modality"] == '"ir"'
    assert metadata["vireid.embedding_dim"] == "8192"
    assert ModelCard.from_metadata(metadata) == CARD


def test_missing_keys_are_all_named():
    metadata = CARD.to_metadata()
    del metadata["vireid.mean"], metadata["vireid.git_sha"]
    with pytest.raises(MissingMetadataError, match=r"vireid\.mean, vireid\.git_sha"):
        ModelCard.from_metadata(metadata)


def test_encoder_filenames():
    assert encoder_filename(Modality.VISIBLE) == "encoder_vis.onnx"
    assert encoder_filename(Modality.INFRARED) == "encoder_ir.onnx"


def test_precision_and_projection_round_trip():
    card = ModelCard(**{**CARD.__dict__, "precision": "int8", "projection": "pca 8192->256", "embedding_dim": 256})
    metadata = card.to_metadata()
    assert (metadata["vireid.precision"], metadata["vireid.embedding_dim"]) == ('"int8"', "256")
    assert ModelCard.from_metadata(metadata) == card


def test_an_older_file_without_precision_reads_as_fp32_unprojected():
    metadata = CARD.to_metadata()
    del metadata["vireid.precision"], metadata["vireid.projection"]
    card = ModelCard.from_metadata(metadata)
    assert (card.precision, card.projection) == ("fp32", "none")


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision 'int4' is not one of fp32, fp16, int8"):
        ModelCard(**{**CARD.__dict__, "precision": "int4"})
