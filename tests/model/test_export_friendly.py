"""``embed`` exports to ONNX (legacy TorchScript exporter, opset 17, dynamic batch) and ORT matches PyTorch."""

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from common.modality import Modality
from model.config import NetConfig
from model.net import VIReIDNet

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning", "ignore::UserWarning"
)


class EmbedWithNormalisation(torch.nn.Module):
    """What the export wraps: [0, 1] RGB in, normalisation in the graph, ``net.embed`` out."""

    def __init__(self, net: VIReIDNet, modality: Modality) -> None:
        super().__init__()
        self.net, self.modality = net, modality
        self.register_buffer("mean", torch.tensor(net.cfg.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(net.cfg.std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.embed((images - self.mean) / self.std, self.modality)


@pytest.fixture(scope="module")
def exported() -> tuple[VIReIDNet, dict[Modality, bytes]]:
    # 3 stripes on a 4-row map: overlapping (uneven) stripes; flip on, so the mirrored pass is exported too.
    torch.manual_seed(0)
    net = VIReIDNet(NetConfig(arch="resnet18", num_classes=6, num_stripes=3, flip_embed=True, specific_stages=1))
    with torch.no_grad():
        net.train()(torch.randn(4, 3, 64, 32), torch.randn(4, 3, 64, 32))  # non-trivial BN running statistics
    net.eval()
    graphs = {}
    for modality in Modality:
        buffer = io.BytesIO()
        torch.onnx.export(
            EmbedWithNormalisation(net, modality).eval(),
            (torch.rand(2, 3, 64, 32),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
        )
        graphs[modality] = buffer.getvalue()
    return net, graphs


@pytest.mark.parametrize("modality", list(Modality))
@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_embedding_matches_torch(exported, modality, batch):
    net, graphs = exported
    onnx.checker.check_model(onnx.load_from_string(graphs[modality]))
    session = ort.InferenceSession(graphs[modality], providers=["CPUExecutionProvider"])
    images = torch.rand(batch, 3, 64, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = EmbedWithNormalisation(net, modality)(images).numpy()
    got = session.run(["embeddings"], {"images": images.numpy()})[0]
    assert got.shape == (batch, net.embedding_dim)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_the_two_graphs_differ_by_modality(exported):
    _, graphs = exported
    images = torch.rand(2, 3, 64, 32).numpy()
    outputs = [
        ort.InferenceSession(graphs[m], providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]
        for m in Modality
    ]
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3
