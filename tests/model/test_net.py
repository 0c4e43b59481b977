import pytest
import torch
import torch.nn.functional as F

from common.modality import Modality
from model.backbone import load_torchvision_resnet
from model.net import VIReIDNet

N = 3


def _warm_up(net: VIReIDNet, images) -> VIReIDNet:
    """One training-mode pass so BN running statistics are not the identity, then eval mode."""
    with torch.no_grad():
        net.train()(images(4, seed=10), images(4, seed=11))
    return net.eval()


def _unnormalised(net: VIReIDNet, x: torch.Tensor, modality: Modality) -> torch.Tensor:
    return net.forward_head(net.forward_features(x, modality), pre_logits=True).bn_feats.flatten(1)


@pytest.mark.parametrize(
    ("overrides", "streams", "has_dcl"),
    [
        ({}, ("V", "V_aux", "I", "I_aux"), True),
        ({"amg": False}, ("V", "I"), False),
        ({"hagl": False}, ("V", "V_aux", "I", "I_aux"), True),
        ({"amg": False, "hagl": False}, ("V", "I"), False),
    ],
)
def test_train_output_shapes_follow_the_ablation_switches(make_net, images, overrides, streams, has_dcl):
    net = make_net(**overrides)
    out = net(images(N, seed=1), images(N, seed=2))
    rows = len(streams) * N
    assert out.streams == streams and out.batch_size == N
    assert len(out.logits) == 4 and all(logits.shape == (rows, 6) for logits in out.logits)
    assert out.feats.shape == (rows, 4 * 512)
    assert (out.dcl.shape == (2 * N, 256)) if has_dcl else out.dcl is None
    assert (net.amg is not None, net.dcl_head is not None) == (has_dcl, has_dcl)
    assert (net.backbone.shared.hagl is not None) == overrides.get("hagl", True)


def test_streams_run_in_order_through_the_right_stems(make_net, images):
    net = _warm_up(make_net(), images)
    vis, ir = images(N, seed=1), images(N, seed=2)
    with torch.no_grad():
        out = net(vis, ir)
        expected = {
            "V": net.forward_head(net.forward_features(vis, Modality.VISIBLE)),
            "V_aux": net.forward_head(net.forward_features(net.amg(vis, Modality.VISIBLE), Modality.VISIBLE)),
            "I": net.forward_head(net.forward_features(ir, Modality.INFRARED)),
            "I_aux": net.forward_head(net.forward_features(net.amg(ir, Modality.INFRARED), Modality.INFRARED)),
        }
    for stream, head in expected.items():
        rows = out.rows(stream)
        torch.testing.assert_close(out.feats[rows], head.feats.flatten(1), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.logits[2][rows], head.logits[2], atol=1e-5, rtol=1e-4)
    with pytest.raises(KeyError, match="streams are"):
        out.rows("X")


def test_part_dim_reduces_every_stripe(make_net, images):
    net = make_net(part_dim=32, num_stripes=2)
    out = net(images(N), images(N, seed=1))
    assert net.embedding_dim == 64 and out.feats.shape == (4 * N, 64) and out.dcl.shape == (2 * N, 256)
    assert net.eval().embed(images(2), Modality.VISIBLE).shape == (2, 64)


def test_mismatched_batches_are_rejected(make_net, images):
    with pytest.raises(ValueError, match="vis and ir batches must have one shape"):
        make_net()(images(2), images(3))


def test_embedding_is_unit_norm_deterministic_and_batch_independent(make_net, images):
    net = _warm_up(make_net(), images)
    x = images(5, seed=3)
    with torch.no_grad():
        emb = net.embed(x, Modality.INFRARED)
        assert emb.shape == (5, net.embedding_dim) == (5, 4 * 512)
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(5))
        torch.testing.assert_close(net.embed(x, Modality.INFRARED), emb, atol=0, rtol=0)
        torch.testing.assert_close(net.embed(x[2:3], Modality.INFRARED), emb[2:3], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(emb, F.normalize(_unnormalised(net, x, Modality.INFRARED), dim=1))


def test_flip_averages_features_before_normalising(make_net, images):
    net = _warm_up(make_net(), images)
    x = images(2, seed=4)
    with torch.no_grad():
        raw = _unnormalised(net, x, Modality.VISIBLE)
        raw_mirrored = _unnormalised(net, x.flip(3), Modality.VISIBLE)
        expected = F.normalize((raw + raw_mirrored) / 2, dim=1)
        torch.testing.assert_close(net.embed(x, Modality.VISIBLE, flip=True), expected)
        assert not torch.allclose(net.embed(x, Modality.VISIBLE, flip=False), expected, atol=1e-4)


def test_flip_none_follows_the_config(make_net, images):
    x = images(2, seed=5)
    plain, flipping = _warm_up(make_net(), images), _warm_up(make_net(flip_embed=True), images)
    with torch.no_grad():
        torch.testing.assert_close(flipping.embed(x, Modality.VISIBLE), plain.embed(x, Modality.VISIBLE, flip=True))
        torch.testing.assert_close(plain.embed(x, Modality.VISIBLE), plain.embed(x, Modality.VISIBLE, flip=False))


def test_modality_selects_the_stem(make_net, images):
    net = _warm_up(make_net(), images)
    x = images(2, seed=6)
    with torch.no_grad():
        vis, ir = net.embed(x, Modality.VISIBLE), net.embed(x, Modality.INFRARED)
        assert (vis - ir).abs().max() > 1e-3
        net.backbone.specific["ir"].load_state_dict(net.backbone.specific["vis"].state_dict())
        torch.testing.assert_close(net.embed(x, Modality.INFRARED), vis)


@pytest.mark.parametrize(
    "overrides", [{}, {"specific_stages": 2, "part_dim": 16, "dcl_head_trainable": True, "gem_learnable": False}]
)
def test_every_trainable_parameter_gets_a_gradient_and_the_fixed_head_none(make_net, images, overrides):
    net = make_net(**overrides)
    out = net(images(4, seed=1), images(4, seed=2))
    pids = torch.tensor([0, 1, 2, 3] * len(out.streams))
    id_loss = sum(F.cross_entropy(logits, pids) for logits in out.logits)
    dcl = (out.dcl[out.dcl_rows("V_aux")] - out.dcl[out.dcl_rows("I_aux")]).norm(dim=1).mean()
    (id_loss + out.feats.pow(2).mean() + 0.5 * dcl).backward()
    trainable = {name: p for name, p in net.named_parameters() if p.requires_grad}
    no_grad = [name for name, p in trainable.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []
    assert any(name.startswith("amg.encoders.vis") for name in trainable)
    frozen = {name for name, p in net.named_parameters() if not p.requires_grad}
    expected_frozen = {f"necks.{i}.bn.bias" for i in range(4)}
    if not overrides.get("dcl_head_trainable", False):
        expected_frozen |= {name for name, _ in net.named_parameters() if name.startswith("dcl_head.")}
    assert frozen == expected_frozen
    assert all(p.grad is None for name, p in net.named_parameters() if name in frozen)


def test_the_dcl_loss_alone_trains_the_generator_and_the_backbone(make_net, images):
    net = make_net()
    out = net(images(4, seed=1), images(4, seed=2))
    (out.dcl[out.dcl_rows("V_aux")] - out.dcl[out.dcl_rows("I_aux")]).norm(dim=1).mean().backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    for name in (
        "amg.encoders.vis.0.weight",
        "amg.encoders.ir.0.weight",
        "amg.decoder.0.weight",
        "backbone.specific.vis.conv1.weight",
        "backbone.shared.layer4.1.conv2.weight",
        "pool.p",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    assert grads["necks.0.classifier.weight"] is None


def test_the_dcl_head_sees_only_the_auxiliary_rows(make_net, images):
    """DCL gradients reach the V_aux and I_aux features and exactly nothing of the V and I features."""
    net = make_net()
    out = net(images(4, seed=1), images(4, seed=2))
    dcl = (out.dcl[out.dcl_rows("V_aux")] - out.dcl[out.dcl_rows("I_aux")]).norm(dim=1).mean()
    (grad,) = torch.autograd.grad(dcl, out.feats)
    norms = {stream: float(grad[out.rows(stream)].norm()) for stream in out.streams}
    assert norms["V"] == 0.0 and norms["I"] == 0.0, norms
    assert norms["V_aux"] > 0 and norms["I_aux"] > 0, norms
    with torch.no_grad():  # the head's batch statistics are those of the auxiliary rows alone
        aux = torch.cat([out.feats[out.rows("V_aux")], out.feats[out.rows("I_aux")]])
        expected = net.dcl_head(aux.unflatten(1, (4, 512)).mean(dim=1))
    torch.testing.assert_close(out.dcl.detach(), expected)
    with pytest.raises(KeyError, match="only"):
        out.dcl_rows("V")


def test_param_groups_split_pretrained_backbone_from_new_modules(make_net):
    net = make_net(specific_stages=1)
    groups = net.param_groups(lr=0.1, backbone_lr_mult=0.1)
    assert [(g["name"], g["lr"], g["lr_mult"]) for g in groups] == [
        ("backbone", pytest.approx(0.01), 0.1),
        ("new", 0.1, 1.0),
    ]
    names = {id(p): n for n, p in net.named_parameters()}
    backbone = {names[id(p)] for p in groups[0]["params"]}
    new = {names[id(p)] for p in groups[1]["params"]}
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert backbone | new == trainable and not backbone & new
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    assert "backbone.specific.ir.layer1.0.conv1.weight" in backbone and "backbone.shared.layer4.1.bn2.bias" in backbone
    assert {n.split(".")[0] for n in new} == {"amg", "backbone", "pool", "necks"}
    assert all(n.startswith(("amg.", "backbone.shared.hagl.", "pool.", "necks.")) for n in new)
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def test_backbone_prefixes_name_exactly_the_layers_imagenet_weights_initialise(make_net):
    import torchvision

    net = make_net(specific_stages=2)
    state = torchvision.models.resnet18(weights=None).state_dict()
    loaded = {f"backbone.{t}" for key in state for t in net.backbone.torchvision_targets(key)}
    params = {n for n, _ in net.named_parameters()}
    assert {n for n in params if n.startswith(net.backbone_prefixes())} == loaded & params
    load_torchvision_resnet(net, state)


def test_state_dict_round_trip_gives_the_same_embedding(make_net, images):
    net = _warm_up(make_net(num_stripes=3), images)
    other = make_net(num_stripes=3)
    other.load_state_dict(net.state_dict(), strict=True)
    x = images(2, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(other.eval().embed(x, Modality.INFRARED), net.embed(x, Modality.INFRARED))


@pytest.mark.parametrize("training", [True, False])
def test_head_is_each_stripe_through_its_bnneck(make_net, images, training):
    """forward_head gives, per stripe, the reduced feature, its BatchNorm and the classifier's logits of that."""
    net = make_net(part_dim=32).train(training)
    with torch.no_grad():
        fmap = net.forward_features(images(N, seed=3), Modality.VISIBLE)
        head = net.forward_head(fmap)
        embedding_head = net.forward_head(fmap, pre_logits=True)
        pooled = net.pool(fmap)
        for i, neck in enumerate(net.necks):
            feat = net.reductions[i](pooled[:, i])
            bn_feat = neck.bn(feat)
            torch.testing.assert_close(head.feats[:, i], feat, rtol=0, atol=0)
            torch.testing.assert_close(head.bn_feats[:, i], bn_feat, rtol=0, atol=0)
            torch.testing.assert_close(head.logits[i], neck.classifier(bn_feat), rtol=0, atol=0)
    assert embedding_head.logits == []
    torch.testing.assert_close(embedding_head.bn_feats, head.bn_feats, rtol=0, atol=0)
