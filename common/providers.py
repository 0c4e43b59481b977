"""ONNX Runtime execution provider names, as ``onnxruntime.get_available_providers()`` spells them."""

from __future__ import annotations

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
