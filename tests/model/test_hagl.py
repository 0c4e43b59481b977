import torch
import torch.nn.functional as F

from model.layers.hagl import HAGL


def _randomise(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def _hand_mask(z, w1, w2, w_spatial):
    """CBAM written out: Mc = sigmoid(W2 relu(W1 avg) + W2 relu(W1 max)), Ms on [mean_c; max_c] of Mc*z."""
    avg, mx = z.mean(dim=(2, 3)), z.amax(dim=(2, 3))  # (N, C)
    mc = torch.sigmoid(torch.relu(avg @ w1.T) @ w2.T + torch.relu(mx @ w1.T) @ w2.T)[:, :, None, None]
    refined = mc * z
    pooled = torch.stack([refined.mean(dim=1), refined.amax(dim=1)], dim=1)
    ms = torch.sigmoid(F.conv2d(pooled, w_spatial, padding=3))
    return mc * ms


def test_hagl_matches_a_hand_computation():
    channels = 32
    hagl = HAGL(channels)
    _randomise(hagl, seed=1)
    x = torch.randn(2, channels, 5, 3, generator=torch.Generator().manual_seed(2))
    gamma, beta = hagl.norm.weight, hagl.norm.bias
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    x_bar = (x - mean) / torch.sqrt(var + 1e-5) * gamma[None, :, None, None] + beta[None, :, None, None]
    w1 = hagl.mask.channel.mlp[0].weight.view(channels // 16, channels)
    w2 = hagl.mask.channel.mlp[2].weight.view(channels, channels // 16)
    w_spatial = hagl.mask.spatial.conv.weight
    expected = _hand_mask(x, w1, w2, w_spatial) * x + (1 - _hand_mask(x_bar, w1, w2, w_spatial)) * x_bar
    with torch.no_grad():
        torch.testing.assert_close(hagl(x), expected, atol=1e-5, rtol=1e-5)
        hagl.eval()  # InstanceNorm without running stats behaves the same in eval mode
        torch.testing.assert_close(hagl(x), expected, atol=1e-5, rtol=1e-5)


def test_one_cbam_is_shared_by_both_masks():
    channels = 64
    hagl = HAGL(channels)
    sizes = {name: p.numel() for name, p in hagl.named_parameters()}
    # affine IN (2C) + one MLP (2 * C * C/16, no bias) + one 7x7 conv on 2 maps (no bias)
    assert sum(sizes.values()) == 2 * channels + 2 * channels * (channels // 16) + 2 * 49
    assert set(sizes) == {
        "norm.weight",
        "norm.bias",
        "mask.channel.mlp.0.weight",
        "mask.channel.mlp.2.weight",
        "mask.spatial.conv.weight",
    }


def test_mask_values_lie_in_the_open_unit_interval_and_broadcast_to_the_input():
    hagl = HAGL(32)
    x = torch.randn(3, 32, 4, 2)
    mask = hagl.mask(x)
    assert mask.shape == x.shape
    assert bool(((mask > 0) & (mask < 1)).all())


def test_masked_features_equal_the_mask_times_the_features():
    hagl = HAGL(32)
    _randomise(hagl, seed=3)
    x = torch.randn(2, 32, 6, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(hagl.mask.masked(x), hagl.mask(x) * x, atol=1e-6, rtol=1e-5)
