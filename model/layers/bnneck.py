"""BNNeck: BatchNorm1d with a frozen zero bias, then a bias-free linear identity classifier (fast-reid style)."""

from __future__ import annotations

from torch import Tensor, nn


class BNNeck(nn.Module):
    """BatchNorm1d (bias frozen at 0) followed by a bias-free linear classifier.

    Follows ``fastreid/modeling/heads/embedding_head.py``: the BN weight starts at 1 and its bias is zero and never
    trained, the classifier weight is drawn from N(0, 0.001^2). Retrieval uses the post-BN feature, the
    classifier only serves the identity loss.
    """

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BN weight 1, bias 0 (frozen); classifier normal with std 0.001."""
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: Tensor, with_logits: bool = True) -> tuple[Tensor, Tensor | None]:
        """Map pre-BN features ``(N, D)`` to ``(post-BN features (N, D), logits (N, num_classes))``.

        ``with_logits=False`` skips the classifier (the embedding needs only the feature) and returns None for logits.
        """
        feat = self.bn(x)
        return feat, self.classifier(feat) if with_logits else None
