"""``NoisyKFAC``: NG_MVG, variational inference with a matrix-variate Gaussian posterior per layer.

Zhang, Sun, Duvenaud & Grosse (2018), Algorithm 2 ("noisy K-FAC"). For each layer with weight
matrix ``W = [W | b]`` (``out x (in + 1)``, the homogeneous coordinate of K-FAC) and Kronecker
factors ``A = E[a_bar a_bar^T]``, ``S = E[g g^T]`` (the core's ``G``; ``g`` from targets sampled
from the model):

    W ~ MN(mu, (lambda / N) [S^gamma_in]^-1, [A^gamma_in]^-1)                     (sample())
    A <- (1 - beta) A + beta E[a_bar a_bar^T],  S <- (1 - beta) S + beta E[g g^T]  (eq. 20)
    [A^gamma]^-1, [S^gamma]^-1 refreshed every T_inv steps                          (eq. 21)
    V = grad_W log p(y | x, W) - gamma_in W
    mu <- mu + alpha [S^gamma]^-1 V [A^gamma]^-1

with factored Tikhonov damping (Martens & Grosse 2015, eq. 6.3, and the paper's eq. 21)
``A^gamma = A + pi sqrt(gamma) I``, ``S^gamma = S + sqrt(gamma) / pi I``,
``pi = sqrt((tr A / dim A) / (tr S / dim S))``, ``gamma_in = lambda / (N eta)`` and
``gamma = gamma_in + gamma_ex``. In the core's row-major convention (``vec`` of ``W`` flattened
by rows) the posterior covariance is ``(lambda / N) kron([S^gamma_in]^-1, [A^gamma_in]^-1)``, the
damped K-FAC approximation of ``(lambda / N) (F + gamma_in I)^-1`` (eq. 10). A sample is
``W = mu + sqrt(lambda / N) [S^gamma_in]^-1/2 E [A^gamma_in]^-1/2`` with ``E`` standard normal.

The statistics, the factored-Tikhonov inverses and the preconditioning are the K-FAC core's
(:class:`acktr.KFACPreconditioner` with ``damping_scheme="tikhonov"``,
``inverse_method="inverse"``, ``damping = gamma``); this module adds the posterior.
Before a layer's first statistics its posterior is ``N(mu, init_std^2 I)`` (the formula would
give the prior ``N(mu, eta I)``, which wrecks the first steps; the authors' code also starts from
a small constant covariance).
Minimisation form as in :mod:`acktr.noisy.adam`: ``.grad`` is the gradient of the batch-mean
negative log-likelihood at the sample, and ``mu <- mu - alpha [S^gamma]^-1 (grad + gamma_in W)
[A^gamma]^-1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from acktr.blocks import tikhonov_pi
from acktr.layers import registered_types
from acktr.linalg import safe_eigh
from acktr.noisy.common import NoisyOptimizer, check_elbo_constants
from acktr.noisy.diagonal import warmup_decay
from acktr.preconditioner import KFACPreconditioner
from acktr.schedules import Schedule, check_non_negative, check_positive


def damped_inverse_sqrt(factor: Tensor, shift: float) -> Tensor:
    """``(factor + shift I)^-1/2`` of a symmetric PSD factor, by eigendecomposition."""
    d, q = safe_eigh(factor)
    return (q * (d + shift).rsqrt()) @ q.T


class NoisyKFAC(NoisyOptimizer):
    """Noisy K-FAC (NG_MVG): a matrix-variate Gaussian posterior per layer, fitted by noisy
    natural gradient with the K-FAC Fisher.

    Loop (the same as :class:`acktr.noisy.NoisyAdam`)::

        opt = NoisyKFAC(model, n_data=len(train_x))
        for x, y in batches:
            with opt.sample():
                out = model(x)
                if opt.stats_due:
                    with opt.record_stats():
                        acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
                opt.zero_grad()
                nll(out, y).backward()
            opt.step()

    Args:
        model: the network. Every trainable parameter must belong to a layer the K-FAC core
            supports (``nn.Linear``, ``nn.Conv2d``, or registered with
            :func:`acktr.register_layer`); others raise (use :class:`NoisyAdam` for them).
        n_data: the training-set size ``N``.
        lr: step size ``alpha`` (float or callable of the step). Default 1e-2.
        kl_weight: ``lambda``, the KL weight (1: the ELBO). Default 1.
        prior_var: ``eta``, the prior variance. Default 1.
        damping_ex: extrinsic damping ``gamma_ex`` >= 0 (update only). Default 1e-3.
        stat_decay: ``1 - beta``, the EMA decay of the factors, after a running-mean warm-up
            (weight ``max(beta, 1/k)`` for the ``k``-th statistics). Default 0.99.
        stats_every: ``T_stats``. Default 1.
        inverse_every: ``T_inv``; the posterior's factors are refreshed with the inverses, and
            at every step during the factors' warm-up (the first ``1 / (1 - stat_decay)``
            statistics). Default 10.
        init_std: the posterior standard deviation before a layer's first statistics.
            Default 1e-3.
    """

    def __init__(
        self,
        model: nn.Module,
        n_data: int,
        lr: Schedule = 1e-2,
        kl_weight: float = 1.0,
        prior_var: float = 1.0,
        damping_ex: float = 1e-3,
        stat_decay: float = 0.99,
        stats_every: int = 1,
        inverse_every: int = 10,
        init_std: float = 1e-3,
    ) -> None:
        check_elbo_constants(n_data, kl_weight, prior_var)
        check_positive("lr", lr)
        check_non_negative("damping_ex", damping_ex)
        self.init_std = check_positive("init_std", init_std)
        self._set_elbo_constants(n_data, kl_weight, prior_var)
        self.damping_ex = float(damping_ex)
        self.preconditioner = KFACPreconditioner(
            model,
            damping=self.damping_in + self.damping_ex,
            stat_decay=stat_decay,
            stats_every=stats_every,
            inverse_every=inverse_every,
            damping_scheme="tikhonov",
            inverse_method="inverse",
            fallback="identity",
        )
        unclaimed = sorted(self.preconditioner.identity_params)
        if unclaimed:
            self.preconditioner.remove_hooks()
            types = ", ".join(t.__name__ for t in registered_types())
            raise ValueError(
                f"NoisyKFAC needs every trainable parameter in a K-FAC layer ({types}); "
                f"{unclaimed} are not. Freeze them (requires_grad=False) or use NoisyAdam."
            )
        self.blocks = self.preconditioner.blocks
        self.stat_decay = self.preconditioner.stat_decay
        super().__init__(self._params(), lr)
        self._sqrt_factors: dict[str, tuple[Tensor, Tensor]] = {}
        self._refresh_posterior()

    def _params(self) -> list[Tensor]:
        return [p for b in self.blocks.values() for p in b.helper.params()]

    # ------------------------------------------------------------------ the posterior
    def _refresh_posterior(self) -> None:
        """``[S^gamma_in]^-1/2`` and ``[A^gamma_in]^-1/2`` of every block (eq. 21 damping)."""
        root = math.sqrt(self.damping_in)
        for name, b in self.blocks.items():
            if int(b.n_updates) == 0:  # no statistics yet: std init_std
                eye_g = torch.eye(b.dim_g, dtype=b.dtype, device=b.device)
                scale = self.init_std / math.sqrt(self.kl_weight / self.n_data)
                eye_a = torch.eye(b.dim_a, dtype=b.dtype, device=b.device)
                self._sqrt_factors[name] = (scale * eye_g, eye_a)
                continue
            pi = float(tikhonov_pi(b.A.trace(), b.dim_a, b.G.trace(), b.dim_g))
            self._sqrt_factors[name] = (
                damped_inverse_sqrt(b.G, root / pi),
                damped_inverse_sqrt(b.A, pi * root),
            )

    def posterior_covariance(self, layer: str) -> Tensor:
        """The dense posterior covariance of a layer's ``[W | b]`` flattened row-major:
        ``(lambda / N) kron([S^gamma_in]^-1, [A^gamma_in]^-1)`` (for tests and small layers)."""
        s_half, a_half = self._sqrt_factors[layer]
        return self.kl_weight / self.n_data * torch.kron(s_half @ s_half, a_half @ a_half)

    def _noise(self) -> list[Tensor]:
        scale = math.sqrt(self.kl_weight / self.n_data)
        out: list[Tensor] = []
        for name, b in self.blocks.items():
            s_half, a_half = self._sqrt_factors[name]
            e = torch.randn(b.dim_g, b.dim_a, dtype=b.dtype, device=b.device)
            noise = scale * (s_half @ e @ a_half)
            w = b.helper.weight
            out.append(noise[:, : b.helper.in_features].reshape(w.shape))
            if b.helper.has_bias:
                out.append(noise[:, -1])
        return out

    def sample(self) -> AbstractContextManager[None]:
        """Context: the model's layers hold ``W ~ MN(mu, (lambda/N) [S^g]^-1, [A^g]^-1)``.

        Run a training step's forward and backward passes inside it; on exit the means are
        restored. Also usable for Monte Carlo predictions.
        """
        return self._sampled(self._noise())

    # ------------------------------------------------------------------ statistics
    def record_stats(self) -> AbstractContextManager[None]:
        """Context recording the K-FAC factors from a Fisher-loss backward (the core's), with
        the running-mean warm-up of :func:`acktr.noisy.diagonal.warmup_decay`: the first
        statistics of 10 examples would otherwise fix the posterior for ``1/beta`` steps."""
        n = min(int(b.n_updates) for b in self.blocks.values())
        self.preconditioner.stat_decay = warmup_decay(self.stat_decay, n)
        return self.preconditioner.record_stats()

    @property
    def stats_due(self) -> bool:
        """True when the next step records statistics (every ``stats_every`` steps)."""
        self.preconditioner.steps = self.steps
        return self.preconditioner.stats_due

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Algorithm 2's update of the means (refreshing inverses and posterior when due)."""
        self._check_step(closure)
        lr = self._step_lr()
        pre = self.preconditioner
        pre.steps = self.steps
        # During the factors' running-mean warm-up they change fast, and an inverse from the
        # first few minibatches, kept for T_inv steps, amplifies unseen directions by 1/gamma:
        # refresh every step until the EMA takes over.
        n_stats = min(int(b.n_updates) for b in self.blocks.values())
        warming = n_stats < 1.0 / (1.0 - self.stat_decay)
        refresh = pre.refresh_due() or warming
        if refresh and not pre.refresh_due():
            pre.refresh()
        for p, w in zip(self._params(), self._sample, strict=True):
            if p.grad is not None:
                p.grad.add_(w, alpha=self.damping_in)  # V = -(grad log p - gamma_in W)
        pre.step()  # .grad <- [S^gamma]^-1 V [A^gamma]^-1
        for p in self._params():
            if p.grad is not None:
                p.sub_(lr * p.grad)
        if refresh:
            self._refresh_posterior()
        self._sample = None
        self.steps += 1
        return None

    # ------------------------------------------------------------------ state
    # state_dict(): hyperparameters, the K-FAC state and the step count (the posterior's
    # square-root factors are recomputed from the factors on load).
    def _posterior_state(self) -> dict[str, object]:
        return {"kfac": self.preconditioner.state_dict()}

    def _load_posterior_state(self, noisy: dict) -> None:
        self.preconditioner.load_state_dict(noisy["kfac"])

    def load_state_dict(self, state_dict: dict[str, object]) -> None:  # type: ignore[override]
        super().load_state_dict(state_dict)
        self._refresh_posterior()

    def layers(self) -> Iterable[str]:
        """Names of the layers with a matrix-variate posterior."""
        return list(self.blocks)
