import torch

from model.layers.bnneck import BNNeck


def test_init_frozen_zero_bias_and_small_classifier():
    torch.manual_seed(0)
    neck = BNNeck(512, 300)
    assert bool((neck.bn.weight == 1).all()) and neck.bn.weight.requires_grad
    assert bool((neck.bn.bias == 0).all()) and not neck.bn.bias.requires_grad
    assert neck.classifier.bias is None
    assert abs(neck.classifier.weight.std().item() - 0.001) < 1e-4
    assert abs(neck.classifier.weight.mean().item()) < 1e-4


def test_forward_returns_batch_normalised_features_and_their_logits():
    neck = BNNeck(8, 3).train()
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0)) * 3 + 1
    feat, logits = neck(x)
    expected = (x - x.mean(dim=0)) / torch.sqrt(x.var(dim=0, unbiased=False) + 1e-5)
    torch.testing.assert_close(feat, expected)
    torch.testing.assert_close(logits, expected @ neck.classifier.weight.T)


def test_bias_stays_zero_after_a_training_step():
    neck = BNNeck(4, 3)
    optimiser = torch.optim.SGD([p for p in neck.parameters() if p.requires_grad], lr=1.0)
    _, logits = neck(torch.randn(6, 4))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    optimiser.step()
    assert neck.bn.bias.grad is None
    assert bool((neck.bn.bias == 0).all())


def test_forward_without_logits_returns_the_same_feature_and_no_logits():
    neck = BNNeck(8, 3).eval()
    neck.bn.running_mean.fill_(0.5)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    feat, logits = neck(x, with_logits=False)
    assert logits is None
    torch.testing.assert_close(feat, neck(x)[0], rtol=0, atol=0)
