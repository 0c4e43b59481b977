import pytest
import torch
import torchvision

from common.modality import Modality
from model.backbone import PretrainedWeightsMismatchError, TwoStreamResNet, build_resnet, load_torchvision_resnet
from model.config import NetConfig
from model.net import VIReIDNet


def _torchvision_state_dict(seed: int = 7) -> dict[str, torch.Tensor]:
    """A torchvision resnet18 state dict with random weights and non-trivial BN statistics."""
    torch.manual_seed(seed)
    tv = torchvision.models.resnet18(weights=None)
    state = tv.state_dict()
    generator = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        if value.is_floating_point() and ("bn" in key or "downsample.1" in key):
            value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
    return state


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_last_stride_one_keeps_layer4_at_layer3_resolution(arch):
    first = build_resnet(arch, last_stride=1).layer4[0]
    strided = first.conv2 if arch == "resnet50" else first.conv1
    assert strided.stride == (1, 1) and first.downsample[0].stride == (1, 1)
    assert build_resnet(arch, last_stride=2).layer4[0].downsample[0].stride == (2, 2)


@pytest.mark.parametrize(("last_stride", "size"), [(1, (4, 2)), (2, (2, 1))])
def test_feature_map_size(last_stride, size):
    backbone = TwoStreamResNet("resnet18", last_stride=last_stride).eval()
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, 64, 32), Modality.INFRARED).shape == (2, 512, *size)


@pytest.mark.parametrize("specific_stages", [0, 1, 2])
def test_specific_stages_are_per_modality_copies_and_the_rest_is_shared(specific_stages):
    backbone = TwoStreamResNet("resnet18", specific_stages=specific_stages)
    specific = ("layer1", "layer2")[:specific_stages]
    for m in Modality:
        assert backbone.specific[m.value].names == ("conv1", "bn1", "relu", "maxpool", *specific)
    assert backbone.shared.names == ("layer1", "layer2", "layer3", "layer4")[specific_stages:]
    vis, ir = backbone.specific["vis"], backbone.specific["ir"]
    assert vis.conv1.weight.data_ptr() != ir.conv1.weight.data_ptr()
    if specific_stages:
        assert vis.layer1[0].conv1.weight.data_ptr() != ir.layer1[0].conv1.weight.data_ptr()
    with torch.no_grad():
        assert backbone.eval()(torch.randn(1, 3, 64, 32), Modality.VISIBLE).shape == (1, 512, 4, 2)


def test_hagl_sits_after_layer3_only_when_enabled():
    assert TwoStreamResNet("resnet18", hagl=True).shared.hagl.norm.num_features == 256
    assert TwoStreamResNet("resnet18", hagl=False).shared.hagl is None


@pytest.mark.parametrize("specific_stages", [0, 1, 2])
def test_torchvision_weights_land_in_both_stems_and_the_shared_stages(specific_stages):
    state = _torchvision_state_dict()
    torch.manual_seed(0)
    net = VIReIDNet(NetConfig(arch="resnet18", num_classes=4, specific_stages=specific_stages))
    load_torchvision_resnet(net, state)
    own = net.state_dict()
    for m in ("vis", "ir"):
        torch.testing.assert_close(own[f"backbone.specific.{m}.conv1.weight"], state["conv1.weight"])
        torch.testing.assert_close(own[f"backbone.specific.{m}.bn1.running_var"], state["bn1.running_var"])
    stage2 = "backbone.specific.vis.layer2" if specific_stages == 2 else "backbone.shared.layer2"
    torch.testing.assert_close(own[f"{stage2}.1.bn2.weight"], state["layer2.1.bn2.weight"])
    torch.testing.assert_close(
        own["backbone.shared.layer4.0.downsample.1.running_mean"], state["layer4.0.downsample.1.running_mean"]
    )
    per_modality = ("conv1", "bn1", "layer1", "layer2")[: 2 + specific_stages]
    for key, value in state.items():
        targets = net.backbone.torchvision_targets(key)
        if key.startswith("fc."):
            assert targets == []
            continue
        assert len(targets) == (2 if key.split(".")[0] in per_modality else 1), key
        for target in targets:
            assert torch.equal(own[f"backbone.{target}"], value), target


def test_loaded_backbone_computes_what_torchvision_computes():
    state = _torchvision_state_dict()
    tv = torchvision.models.resnet18(weights=None)
    tv.load_state_dict(state)
    backbone = TwoStreamResNet("resnet18", specific_stages=1, last_stride=2, hagl=False)
    load_torchvision_resnet(backbone, state)
    x = torch.randn(2, 3, 64, 32)
    trunk = torch.nn.Sequential(*list(tv.children())[:-2]).eval()
    with torch.no_grad():
        expected = trunk(x)
        for m in Modality:
            torch.testing.assert_close(backbone.eval()(x, m), expected)


def test_old_files_without_num_batches_tracked_load():
    state = {k: v for k, v in _torchvision_state_dict().items() if not k.endswith("num_batches_tracked")}
    load_torchvision_resnet(TwoStreamResNet("resnet18"), state)


def test_unexpected_key_is_a_clear_error():
    state = _torchvision_state_dict()
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(PretrainedWeightsMismatchError, match=r"unexpected keys \['layer9.0.conv1.weight'\]"):
        load_torchvision_resnet(TwoStreamResNet("resnet18"), state)


def test_prefixed_keys_are_a_clear_error():
    state = {f"module.{k}": v for k, v in _torchvision_state_dict().items()}
    with pytest.raises(PretrainedWeightsMismatchError, match="without a 'module.' prefix"):
        load_torchvision_resnet(TwoStreamResNet("resnet18"), state)


def test_missing_key_is_a_clear_error():
    state = _torchvision_state_dict()
    del state["layer2.0.conv1.weight"]
    with pytest.raises(PretrainedWeightsMismatchError, match=r"missing net keys \['shared.layer2.0.conv1.weight'\]"):
        load_torchvision_resnet(TwoStreamResNet("resnet18"), state)


def test_shape_mismatch_is_a_clear_error():
    state = _torchvision_state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    expected = r"conv1.weight: file \(64, 3, 3, 3\) vs net \(64, 3, 7, 7\)"
    with pytest.raises(PretrainedWeightsMismatchError, match=expected):
        load_torchvision_resnet(TwoStreamResNet("resnet18"), state)
