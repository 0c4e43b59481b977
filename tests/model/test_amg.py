import torch

from common.modality import Modality
from model.layers.amg import AuxiliaryModalityGenerator


def test_convs_start_at_one_third_with_zero_bias():
    amg = AuxiliaryModalityGenerator()
    convs = [m for m in amg.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5  # two per encoder, one shared decoder
    for conv in convs:
        assert bool((conv.weight == 1 / 3).all())
        assert bool((conv.bias == 0).all())


def test_initial_output_matches_a_hand_computation_in_eval_mode():
    amg = AuxiliaryModalityGenerator().eval()
    x = torch.randn(2, 3, 4, 2, generator=torch.Generator().manual_seed(0))
    encoded = torch.relu(torch.relu(x.sum(dim=1, keepdim=True) / 3) / 3)
    normed = encoded / torch.sqrt(torch.tensor(1.0 + 1e-5))  # fresh BN: running mean 0, var 1
    expected = torch.relu(normed / 3).expand(-1, 3, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(amg(x, Modality.VISIBLE), expected)
        torch.testing.assert_close(amg(x, Modality.INFRARED), expected)


def test_training_mode_normalises_the_code_with_batch_statistics():
    amg = AuxiliaryModalityGenerator().train()
    x = torch.randn(4, 3, 6, 3, generator=torch.Generator().manual_seed(1))
    encoded = torch.relu(torch.relu(x.sum(dim=1, keepdim=True) / 3) / 3)
    normed = (encoded - encoded.mean()) / torch.sqrt(encoded.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(amg(x, Modality.INFRARED), torch.relu(normed / 3).expand(-1, 3, -1, -1))


def test_encoders_are_independent_and_the_decoder_is_shared():
    amg = AuxiliaryModalityGenerator().eval()
    x = torch.rand(2, 3, 4, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before_ir = amg(x, Modality.INFRARED)
        amg.encoders[Modality.VISIBLE.value][0].weight.mul_(2)
        assert not torch.allclose(amg(x, Modality.VISIBLE), before_ir)
        torch.testing.assert_close(amg(x, Modality.INFRARED), before_ir)
        amg.decoder[0].weight.mul_(2)
        torch.testing.assert_close(amg(x, Modality.INFRARED), 2 * before_ir)
