"""acktr: Kronecker-factored natural-gradient optimizers for PyTorch, and ACKTR agents on top.

Public API of the core:

* :class:`KFAC`: K-FAC as a ``torch.optim.Optimizer`` (momentum, ACKTR trust region), or
  adaptive (``adaptive=True``: step, momentum and damping from the exact quadratic model,
  Martens & Grosse 2015 sections 6-7; :class:`AdaptiveSettings`).
* :func:`ggn_vector_product`: exact Gauss-Newton/Fisher-vector products (:mod:`acktr.curvature`).
* :class:`KFACPreconditioner`: K-FAC as a gradient preconditioner for any torch optimizer.
* :func:`fisher_loss`, :func:`gauss_newton_losses`: losses that record Fisher statistics.
* :func:`register_layer`: teach K-FAC a new layer type.
* :class:`BroadcastBias`: a trainable vector shared by all examples (e.g. a Gaussian policy's
  log-std), which K-FAC preconditions with its exact Fisher block.
* :class:`ExactNGD`: exact natural gradient for MLPs (Bernacchia et al. 2018).
* :class:`RNGD`: relative natural gradient (Sun & Nielsen 2017).
* :class:`NoisyAdam`, :class:`NoisyKFAC`, :class:`BayesByBackprop`: variational Bayesian
  networks trained by noisy natural gradient (Zhang, Sun, Duvenaud & Grosse 2018).
* :class:`TridiagonalKFACPreconditioner`: block-tridiagonal K-FAC (Martens & Grosse 2015,
  section 4.3), also as ``KFAC(..., structure="block_tridiagonal")``.
* :func:`average_gradients`: average ``.grad`` over torch.distributed ranks (distributed K-FAC).
* :mod:`acktr.rbm`: restricted Boltzmann machines with FANG and the centering trick.
"""

from __future__ import annotations

from acktr.adaptive import AdaptiveSettings
from acktr.blocks import DiagonalBlock, KroneckerBlock
from acktr.curvature import ggn_vector_product
from acktr.distributed import average_gradients
from acktr.exact_ngd import ExactNGD
from acktr.layers import BroadcastBias, Conv2dHelper, LayerHelper, LinearHelper, register_layer
from acktr.linalg import CurvatureLinAlgError
from acktr.losses import fisher_loss, gauss_newton_losses
from acktr.noisy import BayesByBackprop, NoisyAdam, NoisyKFAC
from acktr.optimizer import KFAC
from acktr.preconditioner import KFACPreconditioner
from acktr.rngd import RNGD
from acktr.tridiagonal import TridiagonalKFACPreconditioner

__all__ = [
    "KFAC",
    "KFACPreconditioner",
    "AdaptiveSettings",
    "ggn_vector_product",
    "fisher_loss",
    "gauss_newton_losses",
    "register_layer",
    "LayerHelper",
    "LinearHelper",
    "Conv2dHelper",
    "BroadcastBias",
    "KroneckerBlock",
    "DiagonalBlock",
    "CurvatureLinAlgError",
    "ExactNGD",
    "RNGD",
    "NoisyAdam",
    "NoisyKFAC",
    "BayesByBackprop",
    "TridiagonalKFACPreconditioner",
    "average_gradients",
]

__version__ = "0.1.0"
