"""Noisy natural gradient (Zhang, Sun, Duvenaud & Grosse 2018): variational inference for Bayesian
neural networks as natural-gradient descent with adaptive weight noise.

* :class:`NoisyAdam`: NG_FFG, a fully factorized Gaussian posterior (Algorithm 1).
* :class:`NoisyKFAC`: NG_MVG, a matrix-variate Gaussian posterior per layer from the K-FAC
  factors (Algorithm 2).
* :class:`BayesByBackprop`: the baseline (Blundell et al. 2015).
* :mod:`acktr.noisy.regression`: a Bayesian MLP with a learned noise precision, training and
  evaluation on the paper's regression protocol.
"""

from __future__ import annotations

from acktr.noisy.adam import NoisyAdam
from acktr.noisy.bbb import BayesByBackprop
from acktr.noisy.kfac import NoisyKFAC
from acktr.noisy.regression import BayesianMLP, FitConfig, evaluate, fit

__all__ = ["NoisyAdam", "NoisyKFAC", "BayesByBackprop", "BayesianMLP", "FitConfig", "fit",
           "evaluate"]
