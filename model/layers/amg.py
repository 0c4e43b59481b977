"""Auxiliary modality generator (AMG): per-modality 1x1 encoders and a shared 1x1 decoder (docs/method.md §2)."""

from __future__ import annotations

from torch import Tensor, nn

from common.modality import Modality


def _encoder() -> nn.Sequential:
    """Conv(3->1, 1x1) -> ReLU -> Conv(1->1, 1x1) -> ReLU -> BatchNorm(1)."""
    return nn.Sequential(
        nn.Conv2d(3, 1, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(1, 1, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(1),
    )


class AuxiliaryModalityGenerator(nn.Module):
    """Maps a normalised image of either modality to a 3-channel auxiliary ("middle") modality image.

    As in MMN (Zhang et al., ACM MM 2021): two modality encoders with independent weights and one shared decoder,
    all 1x1 convolutions, so the generator only re-mixes colour channels per pixel. Conv weights start at 1/3 and
    biases at 0 (a grey-level start).
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({Modality.VISIBLE.value: _encoder(), Modality.INFRARED.value: _encoder()})
        self.decoder = nn.Sequential(nn.Conv2d(1, 3, kernel_size=1), nn.ReLU(inplace=True))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Conv weights 1/3, conv biases 0; BatchNorm at its identity init."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.constant_(module.weight, 1.0 / 3.0)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    def forward(self, x: Tensor, modality: Modality) -> Tensor:
        """Generate the auxiliary image.

        Args:
            x: ``(N, 3, H, W)`` ImageNet-normalised images of ``modality``.
            modality: selects the encoder.

        Returns:
            ``(N, 3, H, W)`` auxiliary images (non-negative, decoder ends in ReLU).
        """
        encoded: Tensor = self.encoders[Modality(modality).value](x)
        decoded: Tensor = self.decoder(encoded)
        return decoded
