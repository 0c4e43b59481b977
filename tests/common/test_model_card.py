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
