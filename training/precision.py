"""Reduced-precision copies of an exported fp32 encoder (int8 QDQ, fp16) and their agreement with it.

- ``int8``: ONNX Runtime static quantisation (``quantize_static``) in QDQ format, unsigned 8-bit activations and
  per-channel signed 8-bit weights (U8S8), MinMax ranges from calibration crops of the encoder's own modality,
  after ONNX Runtime's quantisation pre-processing (shape inference, Conv+BatchNorm folding). U8S8 is the format
  of ONNX Runtime's fast x86 int8 kernels: on AVX2 without VNNI, signed activations (S8S8) fall back to a kernel
  that measured no faster than fp32 (docs/benchmarks.md). That is the ``cpu`` target; the ``tensorrt`` target
  quantises activations and weights to symmetric signed int8 (every zero point 0), the only QDQ form TensorRT's
  explicit quantisation accepts.
- ``fp16``: every float initializer and op in float16 for the CUDA provider, the graph's input and output staying
  float32 (casts at the ends), except the numerically delicate ops listed in ``FP16_KEEP_FLOAT32`` (the GeM powers
  and means, the L2 norm, instance normalisation), which keep float32 with casts around them. The CPU provider
  runs it too (slower than fp32: it exists for GPUs).

Either way the copy carries the fp32 file's ModelCard with ``precision`` set, and ``agreement`` measures the cosine
between its embeddings and the fp32 ones.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, ModelCard
from common.providers import CPU_PROVIDER

INT8_TARGETS = ("cpu", "tensorrt")
FP16_KEEP_FLOAT32 = ("Pow", "ReduceMean", "ReduceL2", "ReduceSum", "InstanceNormalization")
CALIBRATION_BATCH = 8
AGREEMENT_BATCH = 16


class AgreementError(RuntimeError):
    """A reduced-precision encoder's embeddings are too far from the fp32 encoder's."""


@dataclass(frozen=True)
class Agreement:
    """Cosine between a reduced-precision encoder's embeddings and the fp32 ones, over ``count`` crops."""

    min_cosine: float
    mean_cosine: float
    count: int


def _with_card(proto: onnx.ModelProto, card: ModelCard) -> onnx.ModelProto:
    """Replace the ``vireid.*`` metadata of ``proto`` by ``card``'s."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, card.to_metadata())
    proto.producer_name = "vireid"
    proto.producer_version = card.git_sha
    return proto


def read_card(path: Path) -> ModelCard:
    """The ModelCard in an ONNX file's metadata."""
    proto = onnx.load(str(path), load_external_data=False)
    return ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})


def convert_fp16(src: Path, dst: Path) -> None:
    """Write ``dst``: the fp32 encoder ``src`` in float16, float32 at its input and output."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    card = dataclasses.replace(read_card(src), precision="fp16")
    proto = convert_float_to_float16(
        onnx.load(str(src)), keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FLOAT32]
    )
    proto = _with_card(proto, card)
    _sort_nodes(proto.graph)
    del proto.graph.value_info[:]  # the converter leaves stale element types there; the checker re-infers them
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(dst))


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Order ``graph``'s nodes topologically, each output produced once.

    The float16 converter appends its input casts at the end, and casts a tensor that feeds two kept-float32 nodes
    twice under one name; the second, identical cast is dropped.
    """
    producers: dict[str, onnx.NodeProto] = {}
    unique: list[onnx.NodeProto] = []
    for node in graph.node:
        first = producers.get(node.output[0]) if node.output else None
        if first is not None:
            if first.SerializeToString() != node.SerializeToString():
                raise ValueError(f"two different nodes produce {node.output[0]!r} in the float16 graph")
            continue
        producers.update(dict.fromkeys(node.output, node))
        unique.append(node)
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = unique
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(name in known for name in n.input)]
        if not ready:
            raise ValueError("the float16 graph has a cycle or an undefined input")
        for node in ready:
            known.update(node.output)
        ordered.extend(ready)
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray, target: str = "cpu") -> None:
    """Write ``dst``: the fp32 encoder ``src`` statically quantised (QDQ, per-channel) on ``calibration`` images."""
    card = dataclasses.replace(read_card(src), precision="int8")
    proto = _with_card(quantize_qdq(src, calibration, target), card)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(dst))


def quantize_qdq(src: Path, calibration: np.ndarray, target: str = "cpu") -> onnx.ModelProto:
    """Any fp32 image graph at ``src`` (input ``images``) quantised as the int8 export does it, no metadata.

    Raises:
        ValueError: ``target`` is not one of ``INT8_TARGETS``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if target not in INT8_TARGETS:
        raise ValueError(f"unknown int8 target {target!r}; expected one of {', '.join(INT8_TARGETS)}")
    tensorrt = target == "tensorrt"

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        """Feeds the calibration crops in batches of ``CALIBRATION_BATCH``."""

        def __init__(self) -> None:
            self.batches = iter(
                [calibration[i : i + CALIBRATION_BATCH] for i in range(0, len(calibration), CALIBRATION_BATCH)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {ONNX_INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

    with tempfile.TemporaryDirectory(prefix="vireid-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        nodes = onnx.load(str(prepared)).graph.node
        # The BNNecks normalise (N, C) vectors after pooling: nothing to gain there, and no per-channel axis 1.
        vector_bn = [n.name for n in nodes if n.op_type == "BatchNormalization"]
        # The stem convolution (the first, in topological order) stays float: its 3-channel input is where int8
        # lost most agreement with fp32, for a few per cent of the time (docs/benchmarks.md).
        stem = next(n.name for n in nodes if n.op_type == "Conv")
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=[*vector_bn, stem],
            extra_options={"ActivationSymmetric": tensorrt, "WeightSymmetric": True},
        )
        return onnx.load(str(quantized))


def embed_onnx(path: Path, images: np.ndarray, batch: int = AGREEMENT_BATCH) -> np.ndarray:
    """Embeddings of float32 ``(N, 3, H, W)`` images by the encoder at ``path`` on the CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=[CPU_PROVIDER])
    out = [
        session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: np.ascontiguousarray(images[i : i + batch])})[0]
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out).astype(np.float32)


def agreement(reference: Path, candidate: Path, images: np.ndarray) -> Agreement:
    """Cosine between the embeddings of ``images`` by ``candidate`` and by the fp32 ``reference``."""
    ref = embed_onnx(reference, images)
    got = embed_onnx(candidate, images)
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    return Agreement(min_cosine=float(cos.min()), mean_cosine=float(cos.mean()), count=len(cos))
