"""Restricted Boltzmann machines trained by maximum likelihood with natural-gradient methods.

FANG (Grosse & Salakhutdinov): a Gaussian graphical model over the sufficient statistics
approximates the Fisher matrix, giving a sparse ``L D L^T`` inverse; compared with plain SGD and
the centering trick on the same PCD gradient. Exact tools (enumeration) and AIS give log Z.
See ``docs/rbm.md``.

Public API:

* :class:`RBM`: the binary RBM (``W``, ``a``, ``b``; ``free_energy``, ``sample_h``, ``sample_v``).
* :class:`PersistentChains`, :func:`likelihood_gradient`, :class:`Statistics`: the PCD gradient.
* :class:`SGD`, :class:`Centered`, :class:`FANG`: the optimizers.
* :class:`GraphicalFisher`: FANG's (and centering's) model of the Fisher matrix.
* :func:`exact_log_partition`, :func:`exact_log_likelihood`, :func:`exact_fisher`,
  :func:`exact_statistics`, :func:`gaussian_kl`: exact computations for small models.
* :func:`ais_log_partition`, :class:`AISResult`, :func:`log_likelihood_interval`: AIS.
"""

from __future__ import annotations

from acktr.rbm.ais import AISResult, ais_log_partition, log_likelihood_interval
from acktr.rbm.exact import (
    exact_fisher,
    exact_log_likelihood,
    exact_log_partition,
    exact_statistics,
    gaussian_kl,
)
from acktr.rbm.fisher import GraphicalFisher
from acktr.rbm.model import RBM, data_log_odds, flatten_parameters, unflatten_parameters
from acktr.rbm.optimizers import FANG, SGD, Centered
from acktr.rbm.pcd import PersistentChains, Statistics, likelihood_gradient

__all__ = [
    "RBM",
    "PersistentChains",
    "Statistics",
    "likelihood_gradient",
    "SGD",
    "Centered",
    "FANG",
    "GraphicalFisher",
    "exact_log_partition",
    "exact_log_likelihood",
    "exact_fisher",
    "exact_statistics",
    "gaussian_kl",
    "ais_log_partition",
    "AISResult",
    "log_likelihood_interval",
    "data_log_odds",
    "flatten_parameters",
    "unflatten_parameters",
]
