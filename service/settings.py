"""Service settings, read from ``VIREID_*`` environment variables (built inside ``create_app``, never at import)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.providers import CPU_PROVIDER, CUDA_PROVIDER
from index.config import IndexConfig
from index.milvus.config import MilvusConfig
from service.tensorrt import check_provider_order


class Settings(BaseSettings):
    """Configuration of the retrieval service; every field is overridable as ``VIREID_<FIELD>``.

    Example: ``VIREID_MODEL_DIR=/models VIREID_DATA_DIR=/data/gallery VIREID_API_KEY=s3cret vireid serve``.
    List and nested fields take JSON: ``VIREID_PROVIDERS='["CPUExecutionProvider"]'``; nested fields also
    take ``__``: ``VIREID_INDEX__KIND=ivf``.
    """

    model_config = SettingsConfigDict(env_prefix="VIREID_", env_nested_delimiter="__", extra="forbid", frozen=True)

    model_dir: Path = Field(
        default=Path("models"), description="directory holding encoder_vis.onnx and encoder_ir.onnx"
    )
    data_dir: Path = Field(
        default=Path("gallery"), description="gallery directory (FAISS index, SQLite metadata, manifest)"
    )
    providers: tuple[str, ...] = Field(
        default=(CUDA_PROVIDER, CPU_PROVIDER), description="ONNX Runtime execution providers in order of preference"
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime intra-op threads per session; 0 = ORT default"
    )
    intra_op_spinning: bool = Field(
        default=False, description="let ORT threads busy-wait between runs (faster on dedicated cores, not shared ones)"
    )
    api_key: SecretStr | None = Field(
        default=None, description="when set, writes need the header X-API-Key with this value"
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1, description="request body limit, enforced while reading"
    )
    max_image_pixels: int = Field(
        default=20_000_000, ge=1, description="decompression-bomb guard: larger images are refused with 413"
    )
    max_files_per_request: int = Field(default=64, ge=1, description="most image files one request may carry")
    batching: bool = Field(default=True, description="group concurrent requests into one encoder run per modality")
    max_batch: int = Field(default=32, ge=1, description="most images per micro-batch")
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="extra wait for a micro-batch to fill; 0 batches only what queued while the encoder was busy",
    )
    inference_workers: int = Field(default=1, ge=1, description="threads running encoder inference per modality")
    decode_workers: int = Field(default=4, ge=1, description="threads decoding uploaded images")
    index: IndexConfig | MilvusConfig = Field(
        default_factory=lambda: IndexConfig.model_validate({}),
        description="gallery backend and index: FAISS (index.config.IndexConfig, kind exact|ivf, JSON or nested: "
        'VIREID_INDEX__KIND=ivf) or Milvus (index.milvus.config.MilvusConfig: {"kind": "milvus", "uri": ...})',
    )
    default_top_k: int = Field(default=10, ge=1, description="matches returned by /search when top_k is not given")
    max_top_k: int = Field(default=1000, ge=1, description="largest top_k /search accepts")
    host: str = Field(default="127.0.0.1", description="address `vireid serve` binds")
    port: int = Field(default=8000, ge=0, le=65535, description="port `vireid serve` binds")

    # Gallery metadata limits: checked once when an item is added, so whatever is stored reads back.
    max_extra_bytes: int = Field(
        default=16 * 1024, ge=2, description="largest `extra` JSON object of one gallery item, serialised (bytes)"
    )
    max_extra_depth: int = Field(
        default=32, ge=1, le=64, description="deepest nesting of objects and arrays in an item's `extra`"
    )
    max_extra_keys: int = Field(
        default=256, ge=0, description="most keys in an item's `extra`, counted over every nested object"
    )
    max_metadata_bytes_per_request: int = Field(
        default=1024 * 1024,
        ge=1,
        description="metadata bytes one POST /gallery may store in total (a shared `extra` counts once per file)",
    )

    # Access control and the audit log (README "Security model").
    read_api_key: SecretStr | None = Field(
        default=None, description="a second X-API-Key value that may only read (embed, search, list, get)"
    )
    auth_reads: bool = Field(
        default=False, description="every endpoint but /healthz and /readyz needs X-API-Key (the write or the read key)"
    )
    audit_log: Path | None = Field(
        default=None,
        description="append the audit log (a JSON line per write) to this file; default: logger vireid.audit",
    )

    # Admission control: bounded work before the encoder, bounded waits on it, bounded pixels per request.
    max_queue: int = Field(
        default=256,
        ge=1,
        description="images per modality admitted and not yet embedded (queued or encoding); more is 503 overloaded",
    )
    encode_timeout_s: float = Field(
        default=30.0, gt=0, description="longest wait of a request for its embeddings; past it 503 encode_timeout"
    )
    retry_after_s: int = Field(
        default=1, ge=1, description="seconds the Retry-After header of an overloaded or timed-out request advises"
    )
    max_request_pixels: int = Field(
        default=100_000_000,
        ge=1,
        description="most pixels (width x height, from the headers) the images of one request may sum to; 413 past it",
    )

    # TensorRT, used when VIREID_PROVIDERS lists TensorrtExecutionProvider (README "GPU serving").
    trt_cache_dir: Path = Field(
        default=Path("trt-cache"),
        description="persistent directory for TensorRT engines and its timing cache (an engine takes minutes to build)",
    )
    trt_fp16: bool = Field(default=False, description="let TensorRT run layers in float16")
    trt_int8: bool = Field(
        default=False,
        description="let TensorRT run layers in int8 (an int8 export made with --int8-target tensorrt: its scales)",
    )
    trt_max_workspace_bytes: int = Field(
        default=2 << 30, ge=1 << 20, description="most GPU memory TensorRT may use as scratch while building engines"
    )

    @model_validator(mode="after")
    def _check_providers(self) -> Self:
        """Refuse repeated providers, or TensorRT, CUDA and CPU out of that order."""
        check_provider_order(self.providers)
        return self

    # k-reciprocal re-ranking of /search?rerank=true (index.kreciprocal; defaults from Zhong et al., CVPR 2017).
    rerank_k1: int = Field(default=20, ge=1, description="k-reciprocal re-ranking: neighbourhood size k1")
    rerank_k2: int = Field(default=6, ge=1, description="k-reciprocal re-ranking: query-expansion size k2")
    rerank_lambda: float = Field(
        default=0.3, ge=0.0, le=1.0, description="k-reciprocal re-ranking: weight of the original distance"
    )
    rerank_candidates: int = Field(
        default=100,
        ge=1,
        description="k-reciprocal re-ranking: the query's best matches re-ranked (with their k1 neighbours each)",
    )

    same_person_far: float = Field(
        default=0.01,
        gt=0.0,
        lt=1.0,
        description="false-accept rate behind each cross-modal match's `same_person` (calibrated models only)",
    )

    # Thumbnails kept with each gallery item (GET /gallery/{id}/thumbnail, the web page).
    thumbnail_size: int = Field(
        default=256, ge=0, le=4096, description="longest side of the JPEG thumbnail kept per gallery item; 0 keeps none"
    )
    thumbnail_quality: int = Field(default=85, ge=1, le=95, description="JPEG quality of the gallery thumbnails")

    @model_validator(mode="after")
    def _check_queue(self) -> Self:
        """Refuse a queue limit that a request of allowed size could never pass."""
        if self.max_queue < self.max_files_per_request:
            raise ValueError(
                f"VIREID_MAX_QUEUE ({self.max_queue}) must be at least VIREID_MAX_FILES_PER_REQUEST "
                f"({self.max_files_per_request}): a full request could never be admitted"
            )
        return self

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        """Refuse key settings that would not protect what they seem to (empty keys, one key for both roles)."""
        for name, key in (("VIREID_API_KEY", self.api_key), ("VIREID_READ_API_KEY", self.read_api_key)):
            if key is not None and not key.get_secret_value():
                raise ValueError(f"{name} is set but empty: unset it or give it a value")
        if self.auth_reads and self.api_key is None and self.read_api_key is None:
            raise ValueError("VIREID_AUTH_READS=true needs VIREID_API_KEY or VIREID_READ_API_KEY (none is set)")
        if (
            self.api_key is not None
            and self.read_api_key is not None
            and self.api_key.get_secret_value() == self.read_api_key.get_secret_value()
        ):
            raise ValueError("VIREID_READ_API_KEY must differ from VIREID_API_KEY (the read key may not write)")
        return self
