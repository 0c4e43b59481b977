import pytest
import torch
import torch.nn.functional as F

from model.layers.gem import StripeGeM, stripe_bounds


def test_stripe_bounds_even_and_uneven_heights():
    assert stripe_bounds(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    # H=5, P=2: floor(0)=0..ceil(2.5)=3 and floor(2.5)=2..5 -- the middle row belongs to both stripes.
    assert stripe_bounds(5, 2) == [(0, 3), (2, 5)]
    assert stripe_bounds(7, 3) == [(0, 3), (2, 5), (4, 7)]


def test_stripe_bounds_rejects_fewer_rows_than_stripes():
    with pytest.raises(ValueError, match="height 3 is smaller than the number of stripes 4"):
        stripe_bounds(3, 4)


@pytest.mark.parametrize(("height", "stripes"), [(8, 4), (7, 3), (5, 2), (6, 4), (9, 9)])
def test_gem_with_p1_equals_adaptive_average_pooling(height, stripes):
    x = torch.rand(2, 5, height, 3, generator=torch.Generator().manual_seed(height)) + 0.1
    gem = StripeGeM(stripes, p=1.0, learnable=False)
    expected = F.adaptive_avg_pool2d(x, (stripes, 1)).squeeze(3).transpose(1, 2)
    torch.testing.assert_close(gem(x), expected)


def test_gem_matches_the_formula_on_uneven_stripes():
    x = torch.rand(2, 3, 5, 2, generator=torch.Generator().manual_seed(0))
    gem = StripeGeM(num_stripes=2, p=3.0)
    top = x[:, :, 0:3].pow(3).mean(dim=(2, 3)).pow(1 / 3)
    bottom = x[:, :, 2:5].pow(3).mean(dim=(2, 3)).pow(1 / 3)
    out = gem(x)
    assert out.shape == (2, 2, 3)
    torch.testing.assert_close(out[:, 0], top)
    torch.testing.assert_close(out[:, 1], bottom)


def test_gem_matches_the_formula_on_equal_stripes():
    # the reshape path (height divisible by the stripes) against per-stripe slices written out
    x = torch.rand(2, 3, 6, 2, generator=torch.Generator().manual_seed(1))
    gem = StripeGeM(num_stripes=3, p=3.0)
    expected = torch.stack([x[:, :, i : i + 2].pow(3).mean(dim=(2, 3)).pow(1 / 3) for i in (0, 2, 4)], dim=1)
    torch.testing.assert_close(gem(x), expected)


def test_gem_hand_worked_value():
    # one stripe of values 1 and 2: ((1 + 8) / 2) ** (1/3)
    x = torch.tensor([1.0, 2.0]).view(1, 1, 2, 1)
    assert StripeGeM(num_stripes=1, p=3.0)(x).item() == pytest.approx(4.5 ** (1 / 3))


def test_gem_clamps_non_positive_values_to_eps():
    x = -torch.ones(1, 2, 4, 2)
    torch.testing.assert_close(StripeGeM(2, eps=1e-6)(x), torch.full((1, 2, 2), 1e-6))


def test_learnable_p_is_a_parameter_that_gets_a_gradient():
    gem = StripeGeM(2, p=3.0, learnable=True)
    gem(torch.rand(2, 3, 4, 2) + 0.1).sum().backward()
    assert [name for name, _ in gem.named_parameters()] == ["p"]
    assert gem.p.grad is not None and gem.p.grad.abs().item() > 0


def test_fixed_p_is_a_buffer_saved_in_the_state_dict():
    gem = StripeGeM(2, p=4.0, learnable=False)
    assert list(gem.parameters()) == []
    assert gem.state_dict()["p"].item() == 4.0
