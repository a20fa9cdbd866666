"""acktr: Kronecker-factored natural-gradient optimizers for PyTorch, and ACKTR agents on top.

Public API of the core:

* :class:`KFAC`: K-FAC as a ``torch.optim.Optimizer`` (momentum, ACKTR trust region).
* :class:`KFACPreconditioner`: K-FAC as a gradient preconditioner for any torch optimizer.
* :func:`fisher_loss`, :func:`gauss_newton_losses`: losses that record Fisher statistics.
* :func:`register_layer`: teach K-FAC a new layer type.
"""

from __future__ import annotations

from acktr.blocks import DiagonalBlock, KroneckerBlock
from acktr.layers import Conv2dHelper, LayerHelper, LinearHelper, register_layer
from acktr.linalg import CurvatureLinAlgError
from acktr.losses import fisher_loss, gauss_newton_losses
from acktr.optimizer import KFAC
from acktr.preconditioner import KFACPreconditioner

__all__ = [
    "KFAC",
    "KFACPreconditioner",
    "fisher_loss",
    "gauss_newton_losses",
    "register_layer",
    "LayerHelper",
    "LinearHelper",
    "Conv2dHelper",
    "KroneckerBlock",
    "DiagonalBlock",
    "CurvatureLinAlgError",
]

__version__ = "0.1.0"
