"""TensorRT execution provider: its options from the settings, and the order providers may be listed in.

ONNX Runtime tries providers in the order given and runs each graph node on the first that takes it, so a
faster provider listed after a slower one would never be used: the order is TensorRT, CUDA, CPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.providers import CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER

PROVIDER_ORDER = (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)
_HASH_CHUNK = 1 << 20


def check_provider_order(providers: Sequence[str]) -> None:
    """Refuse a provider list with repeats, or with TensorRT, CUDA and CPU out of that order.

    Raises:
        ValueError: a provider is listed twice, or a known provider follows one it should precede.
    """
    if len(set(providers)) != len(providers):
        raise ValueError(f"VIREID_PROVIDERS lists a provider twice: {list(providers)}")
    known = [p for p in providers if p in PROVIDER_ORDER]
    if known != sorted(known, key=PROVIDER_ORDER.index):
        raise ValueError(
            f"VIREID_PROVIDERS lists {known}; list them in the order {list(PROVIDER_ORDER)} (ONNX Runtime uses the "
            "first provider that takes a node, so a faster one after a slower one would never run)"
        )


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TensorrtOptions:
    """What the TensorRT provider is given: a persistent cache directory, precision flags, the workspace bound."""

    cache_dir: Path
    fp16: bool = False
    int8: bool = False
    max_workspace_bytes: int = 2 << 30

    def engine_dir(self, model: Path) -> Path:
        """Engines of ``model`` at these precision flags: one directory per model file content and flags.

        ONNX Runtime names an engine by the graph's structure, not its weights, so a re-exported model of the same
        architecture would load the old engine; keying the directory by the file's hash prevents that.
        """
        flags = "-".join(name for name, on in (("fp16", self.fp16), ("int8", self.int8)) if on) or "fp32"
        return self.cache_dir / "engines" / f"{model.stem}-{file_digest(model)}-{flags}"

    def provider_options(self, model: Path) -> dict[str, str]:
        """ONNX Runtime TensorrtExecutionProvider options for ``model``; creates the cache directories."""
        engines, timing = self.engine_dir(model), self.cache_dir / "timing"
        engines.mkdir(parents=True, exist_ok=True)
        timing.mkdir(parents=True, exist_ok=True)
        return {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(engines),
            "trt_timing_cache_enable": "True",  # kernel timings: shared by every model, keyed by layer and GPU
            "trt_timing_cache_path": str(timing),
            "trt_fp16_enable": str(self.fp16),
            "trt_int8_enable": str(self.int8),
            "trt_max_workspace_size": str(self.max_workspace_bytes),
        }
