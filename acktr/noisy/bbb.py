"""``BayesByBackprop``: the baseline, a diagonal Gaussian posterior fitted by reparameterized
gradients of the ELBO and Adam (Blundell, Cornebise, Kavukcuoglu & Wierstra 2015).

Posterior ``q(w) = N(mu, sigma^2)`` per coordinate with ``sigma = softplus(rho)``, prior
``N(0, eta)``, KL weight ``lambda``, ``N`` data points. The per-data-point objective minimised is

    E_q[-log p(y | x, w)] + (lambda / N) KL(q || p),
    KL = 1/2 sum[(sigma^2 + mu^2) / eta - 1 - log(sigma^2 / eta)]                 (closed form)

estimated with one sample ``w = mu + sigma eps`` per step: with ``g = d(-log p)/dw`` at the sample,

    d/dmu  = g + (lambda / N) mu / eta
    d/drho = (g eps + (lambda / N) (sigma / eta - 1 / sigma)) sigmoid(rho)

and both are fed to Adam. The interface is that of :class:`acktr.noisy.NoisyAdam` (``sample()``
then ``step()``), without ``record_stats()``: BBB uses no curvature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acktr.noisy.common import check_betas, check_elbo_constants, check_model, sampled_weights


class BayesByBackprop(torch.optim.Adam):
    """Bayes by Backprop with the closed-form Gaussian KL, optimized by Adam.

    Args:
        model: the network; its trainable parameters hold the posterior means.
        n_data: the training-set size ``N``.
        lr: Adam's step size for ``mu`` and ``rho``. Default 1e-3.
        betas: Adam's decays. Default (0.9, 0.999).
        kl_weight: ``lambda``. Default 1.
        prior_var: ``eta``. Default 1.
        init_std: the initial posterior standard deviation ``sigma`` (> 0). Default 1e-2.
    """

    def __init__(
        self,
        model: nn.Module,
        n_data: int,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        kl_weight: float = 1.0,
        prior_var: float = 1.0,
        init_std: float = 1e-2,
    ) -> None:
        check_model(model)
        check_elbo_constants(n_data, kl_weight, prior_var)
        if not isinstance(init_std, (int, float)) or not math.isfinite(init_std) or init_std <= 0:
            raise ValueError(f"init_std must be a finite number > 0, got {init_std!r}")
        if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        self.means = [p for p in model.parameters() if p.requires_grad]
        if not self.means:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        rho0 = math.log(math.expm1(init_std))  # softplus^-1
        self.rhos = [torch.full_like(p, rho0).detach() for p in self.means]
        super().__init__(self.means + self.rhos, lr=lr, betas=check_betas(betas))
        self.n_data, self.kl_weight, self.prior_var = n_data, float(kl_weight), float(prior_var)
        self._eps: list[Tensor] | None = None

    def stds(self) -> list[Tensor]:
        """The posterior standard deviations ``softplus(rho)``, in parameter order."""
        return [F.softplus(r) for r in self.rhos]

    def kl(self) -> Tensor:
        """``KL(q || p)`` in closed form (a 0-dim tensor)."""
        eta = self.prior_var
        total = torch.zeros((), dtype=self.means[0].dtype, device=self.means[0].device)
        for mu, s in zip(self.means, self.stds(), strict=True):
            var = s.detach() ** 2
            total = total + 0.5 * ((var + mu.detach() ** 2) / eta - 1 - torch.log(var / eta)).sum()
        return total

    def sample(self) -> AbstractContextManager[None]:
        """Context: the model holds ``w = mu + sigma eps``; gradients inside are at the sample."""
        eps = [torch.randn_like(p) for p in self.means]
        return self._sampled(eps)

    @contextmanager
    def _sampled(self, eps: list[Tensor]) -> Iterator[None]:
        noise = [s * e for s, e in zip(self.stds(), eps, strict=True)]
        with sampled_weights(self.means, noise):
            self._eps = eps
            yield

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Reparameterized ELBO gradients for ``mu`` and ``rho`` (module docstring), then Adam."""
        if closure is not None:
            raise ValueError("BayesByBackprop.step() takes no closure: compute it inside sample()")
        if self._eps is None:
            raise RuntimeError(
                "BayesByBackprop.step() needs gradients at a posterior sample: run the forward "
                "and backward passes inside `with opt.sample():` before every step"
            )
        c, eta = self.kl_weight / self.n_data, self.prior_var
        for mu, rho, eps in zip(self.means, self.rhos, self._eps, strict=True):
            g = torch.zeros_like(mu) if mu.grad is None else mu.grad
            sigma = F.softplus(rho)
            rho.grad = (g * eps + c * (sigma / eta - 1.0 / sigma)) * torch.sigmoid(rho)
            mu.grad = g + c * mu / eta
        self._eps = None
        return super().step()
