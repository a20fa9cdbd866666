"""What the variational optimizers share: the ELBO's constants and the weight-sampling context.

Zhang, Sun, Duvenaud & Grosse (2018), "Noisy natural gradient as variational inference", fit a
Gaussian posterior ``q(w)`` by maximising the KL-weighted ELBO

    L[q] = E_q[log p(D | w)] - lambda KL(q(w) || p(w)),      p(w) = N(0, eta I)        (eq. 3)

per data point: with ``N`` training examples the natural-gradient fixed point has posterior
covariance ``Sigma = (lambda / N) (F + gamma_in I)^-1`` (eq. 10 with the Fisher for the
Hessian), where ``gamma_in = lambda / (N eta)`` is the *intrinsic damping* the prior contributes
(Algorithms 1 and 2). ``lambda`` is the KL weight (1 for the true ELBO), ``eta`` the prior
variance.

Every optimizer in :mod:`acktr.noisy` keeps the posterior means in the model's parameters and
writes a posterior sample into them only inside ``with opt.sample():``; the gradients computed
there are gradients at the sample, which ``step()`` turns into an update of the means.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor


def check_elbo_constants(n_data: int, kl_weight: float, prior_var: float) -> None:
    """Validate ``N`` (an int >= 1), ``lambda`` (> 0) and ``eta`` (> 0), naming a bad value."""
    if isinstance(n_data, bool) or not isinstance(n_data, int) or n_data < 1:
        raise ValueError(f"n_data (training-set size N) must be an integer >= 1, got {n_data!r}")
    for name, value in (("kl_weight", kl_weight), ("prior_var", prior_var)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def intrinsic_damping(n_data: int, kl_weight: float, prior_var: float) -> float:
    """``gamma_in = lambda / (N eta)`` (Zhang et al. 2018, Algorithms 1 and 2)."""
    return kl_weight / (n_data * prior_var)


def check_betas(betas: Sequence[float]) -> tuple[float, float]:
    """Validate a pair of EMA decays in [0, 1)."""
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


@contextmanager
def sampled_weights(params: Sequence[Tensor], noise: Sequence[Tensor]) -> Iterator[list[Tensor]]:
    """Write ``mean + noise`` into ``params`` for the duration of the context, then the means back.

    Yields the list of samples (detached copies). ``.grad`` is untouched, so gradients of losses
    computed inside are gradients at the sample.
    """
    with torch.no_grad():
        means = [p.detach().clone() for p in params]
        for p, e in zip(params, noise, strict=True):
            p.add_(e.to(p.dtype))
        samples = [p.detach().clone() for p in params]
    try:
        yield samples
    finally:
        with torch.no_grad():
            for p, m in zip(params, means, strict=True):
                p.copy_(m)
