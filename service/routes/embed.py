"""POST /embed: images to embeddings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from service.deps import EmbedderDep, ModalityDep, ModelDep, SettingsDep
from service.images import read_uploads
from service.schemas import EmbedResponse, error_responses

router = APIRouter(tags=["embed"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    summary="Embed one or more images",
    responses=error_responses(400, 413, 415, 422, 503),
)
async def embed(
    embedder: EmbedderDep,
    model: ModelDep,
    settings: SettingsDep,
    modality: ModalityDep,
    files: Annotated[list[UploadFile], File(min_length=1, description="one or more image files (any Pillow format)")],
) -> EmbedResponse:
    """L2-normalised embeddings of the uploaded images, in upload order.

    Example: `curl -F files=@crop.jpg 'http://localhost:8000/embed?modality=ir'`
    """
    uploads = await read_uploads(files, settings.max_files_per_request)
    embeddings = await embedder.embed(modality, uploads, endpoint="embed")
    return EmbedResponse(
        modality=modality,
        model_version=model.model_version,
        dim=model.embedding_dim,
        embeddings=embeddings.tolist(),
    )
