"""Deep autoencoder: the classic K-FAC benchmark (Hinton & Salakhutdinov 2006; Martens 2010;
Martens & Grosse 2015, section 13).

The network is a stack of dense layers with tanh units and a narrow *linear* code layer; the
output layer gives one logit per pixel and the loss is the logistic (Bernoulli) cross-entropy
between the reconstruction and the image, summed over pixels and averaged over the batch, as in
Martens & Grosse (2015). Its Fisher is that of independent Bernoulli outputs, so K-FAC uses
``fisher_loss(logits, "bernoulli")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

DIGITS_LAYERS: tuple[int, ...] = (64, 128, 64, 32, 8)
"""Encoder widths for the 8x8 digits (input 64, code 8); the decoder mirrors them."""

MNIST_LAYERS: tuple[int, ...] = (784, 1000, 500, 250, 30)
"""Encoder widths of Hinton & Salakhutdinov's MNIST autoencoder (input 784, code 30)."""


class Autoencoder(nn.Module):
    """A mirrored tanh autoencoder with a linear code layer and logit outputs.

    Weights get Glorot-uniform initialisation with the tanh gain 5/3 and biases zero (Glorot &
    Bengio 2010); PyTorch's default initialisation shrinks the signal by about sqrt(3) per layer,
    which leaves a deep tanh stack near the "predict the mean image" plateau for a long time.

    Args:
        widths: encoder widths from the input to the code, e.g. ``(64, 128, 64, 32, 8)``; the
            decoder mirrors them back to the input size. Default :data:`DIGITS_LAYERS`.
    """

    def __init__(self, widths: Sequence[int] = DIGITS_LAYERS) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths needs an input and a code size >= 1, got {widths}")
        sizes = widths + widths[-2::-1]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=False)
        )
        self.code_index = len(widths) - 2  # the layer whose output is the code (kept linear)
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain("tanh"))
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``(B, ...)`` to reconstruction logits ``(B, n_pixels)``."""
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i != self.code_index and i != len(self.layers) - 1:
                h = h.tanh()
        return h


def reconstruction_loss(logits: Tensor, x: Tensor) -> Tensor:
    """Logistic cross-entropy of the reconstruction: sum over pixels, mean over the batch.

    Args:
        logits: ``(B, n_pixels)`` reconstruction logits.
        x: the images ``(B, ...)`` with values in ``[0, 1]`` (the targets).
    """
    target = x.flatten(1)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / x.shape[0]
