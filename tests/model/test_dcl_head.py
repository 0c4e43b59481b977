import torch
import torch.nn.functional as F

from model.layers.dcl_head import DCLHead


def _batch(seed: int = 0) -> torch.Tensor:
    return torch.randn(6, 16, generator=torch.Generator().manual_seed(seed))


def _batch_norm(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(dim=0)) / torch.sqrt(x.var(dim=0, unbiased=False) + 1e-5)


def test_fixed_by_default_and_trainable_on_request():
    assert all(not p.requires_grad for p in DCLHead(16, 8).parameters())
    assert all(p.requires_grad for p in DCLHead(16, 8, trainable=True).parameters())


def test_projection_is_seeded_independently_of_the_global_rng():
    torch.manual_seed(1)
    a = DCLHead(16, 8, seed=3)
    torch.manual_seed(2)
    b = DCLHead(16, 8, seed=3)
    c = DCLHead(16, 8, seed=4)
    torch.testing.assert_close(a.fc1.weight, b.fc1.weight)
    torch.testing.assert_close(a.fc2.weight, b.fc2.weight)
    assert not torch.allclose(a.fc1.weight, c.fc1.weight)


def test_forward_matches_a_hand_computation():
    head = DCLHead(16, 8, seed=0)
    x = _batch()
    hidden = torch.relu(_batch_norm(F.normalize(x, dim=1) @ head.fc1.weight.T))
    expected = F.normalize(_batch_norm(hidden @ head.fc2.weight.T), dim=1)
    out = head(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(6))


def test_same_output_in_train_and_eval_mode_and_no_state_change():
    head = DCLHead(16, 8)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    train_out = head.train()(_batch())
    eval_out = head.eval()(_batch())
    torch.testing.assert_close(train_out, eval_out)
    assert not any("running" in k for k in before)
    after = head.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_gradient_reaches_the_input_but_not_the_fixed_head():
    head = DCLHead(16, 8)
    x = _batch().requires_grad_(True)
    (head(x[:3]) - head(x[3:])).norm(dim=1).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in head.parameters())
