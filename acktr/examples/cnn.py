"""A small convolutional classifier for the 8x8 digits (or 28x28 MNIST).

Two 3x3 convolutions (the second with stride 2) with ReLU, an average pool down to 4x4 (the
identity on 8x8 digits; on 28x28 MNIST it keeps the dense layer at 512 inputs, so its Kronecker
factor stays 513x513), then two dense layers. Softmax cross-entropy, whose Fisher is the
categorical one: K-FAC uses ``fisher_loss(logits, "categorical")``, with KFC blocks (Grosse &
Martens 2016) for the convolutions.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SmallCNN(nn.Module):
    """conv3x3(1->c1) - relu - conv3x3/2(c1->c2) - relu - avgpool to 4x4 - linear(hidden) - relu -
    linear(classes).

    Args:
        side: input image height (= width) in pixels, at least 8. Default 8 (digits).
        channels: output channels of the two convolutions. Default ``(16, 32)``.
        hidden: width of the hidden dense layer. Default 64.
        n_classes: number of classes. Default 10.
    """

    def __init__(
        self,
        side: int = 8,
        channels: tuple[int, int] = (16, 32),
        hidden: int = 64,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        if side < 8:
            raise ValueError(f"side must be at least 8, got {side}")
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(c2 * 16, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``(B, 1, side, side)`` to class logits ``(B, n_classes)``."""
        h = F.relu(self.conv1(x))
        h = self.pool(F.relu(self.conv2(h)))
        h = F.relu(self.fc1(h.flatten(1)))
        return self.fc2(h)


def classification_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Softmax cross-entropy, averaged over the batch (the per-example loss K-FAC assumes)."""
    return F.cross_entropy(logits, y)
