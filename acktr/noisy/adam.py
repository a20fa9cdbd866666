"""``NoisyAdam``: NG_FFG, variational inference with a fully factorized Gaussian posterior.

Zhang, Sun, Duvenaud & Grosse (2018), Algorithm 1 ("noisy Adam"), with ``k`` the step (from 1):

    w ~ N(mu, (lambda / N) diag(f + gamma_in)^-1)           posterior sample (sample())
    v = grad_w log p(y | x, w) - gamma_in w                 at the sample
    m <- beta1 m + (1 - beta1) v
    f <- beta2 f + (1 - beta2) (grad_w log p(y | x, w))^2   diagonal Fisher (record_stats())
    mu <- mu + alpha (m / (1 - beta1^k)) / (f + gamma)

with ``gamma_in = lambda / (N eta)`` and ``gamma = gamma_in + gamma_ex``. Unlike Adam, the
denominator has no square root: it is the damped diagonal Fisher, and the same ``f`` sets the
posterior variance.

Choices where the box leaves room, stated once:

* ``f`` is the diagonal of the *Fisher* (targets sampled from the model, as everywhere in this
  library; REFERENCE 1), from per-example gradients of a Fisher-loss backward
  (:class:`acktr.noisy.diagonal.DiagonalFisher`; exact per example for dense and convolutional
  layers).
* ``f`` warms up as a running mean of the statistics so far (weight ``max(1 - beta2, 1/k)``),
  the analogue of Adam's bias correction: with ``f = 0`` the first steps would be
  ``alpha / gamma`` times the gradient, and ``gamma`` is tiny.
* Minimisation form: the training loss is the batch mean of ``-log p(y | x, w)``, so ``.grad`` is
  ``-grad_w log p`` and ``mu <- mu - alpha m_hat / (f + gamma)`` with ``v = grad + gamma_in w``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from acktr.noisy.common import NoisyOptimizer, check_betas, check_elbo_constants, check_model
from acktr.noisy.diagonal import DiagonalFisher
from acktr.schedules import Schedule, check_non_negative, check_positive


class NoisyAdam(NoisyOptimizer):
    """Noisy Adam (NG_FFG): a diagonal Gaussian posterior fitted by noisy natural gradient.

    Loop (the model's parameters hold the posterior means outside ``sample()``)::

        opt = NoisyAdam(model, n_data=len(train_x))
        for x, y in batches:
            with opt.sample():                       # w ~ q written into the model
                out = model(x)
                with opt.record_stats():             # diagonal Fisher, sampled targets
                    acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
                opt.zero_grad()
                nll(out, y).backward()               # batch mean of -log p(y | x, w)
            opt.step()                               # Algorithm 1's update of m, mu

    Args:
        model: the network; every trainable parameter gets a factorized Gaussian posterior.
        n_data: the training-set size ``N``.
        lr: step size ``alpha`` (float or callable of the step). Default 1e-3.
        betas: ``(beta1, beta2)``, EMA decays of the momentum ``m`` and of the Fisher ``f``.
            Default (0.9, 0.999) as Adam.
        kl_weight: ``lambda``, the weight of the KL term (1: the ELBO). Default 1.
        prior_var: ``eta``, the variance of the prior ``N(0, eta I)``. Default 1.
        damping_ex: extrinsic damping ``gamma_ex`` >= 0 added to the Fisher in the update (not in
            the posterior). Default 0.
        init_std: the posterior standard deviation of a parameter before its first Fisher
            statistics (the formula would give the prior's ``sqrt(eta)``, which wrecks the first
            steps of a network; the authors' code starts at a small constant too). Default 1e-3.
    """

    def __init__(
        self,
        model: nn.Module,
        n_data: int,
        lr: Schedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        kl_weight: float = 1.0,
        prior_var: float = 1.0,
        damping_ex: float = 0.0,
        init_std: float = 1e-3,
    ) -> None:
        check_model(model)
        check_elbo_constants(n_data, kl_weight, prior_var)
        check_positive("lr", lr)
        check_non_negative("damping_ex", damping_ex)
        self.init_std = check_positive("init_std", init_std)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        super().__init__([p for _, p in named], lr)
        self.betas = check_betas(betas)
        self._set_elbo_constants(n_data, kl_weight, prior_var)
        self.damping_ex = float(damping_ex)
        self.fisher = DiagonalFisher(model)
        self.blocks = self.fisher.blocks

    # ------------------------------------------------------------------ the posterior
    def _params(self) -> list[Tensor]:
        return [b.param for b in self.blocks.values()]

    def posterior_variance(self) -> dict[str, Tensor]:
        """The posterior variances ``(lambda / N) / (f + gamma_in)``, by parameter name
        (``init_std^2`` before the parameter's first statistics)."""
        scale = self.kl_weight / self.n_data
        init = self.init_std**2
        return {
            n: scale / (b.F + self.damping_in) if b.recorded else torch.full_like(b.F, init)
            for n, b in self.blocks.items()
        }

    def sample(self) -> AbstractContextManager[None]:
        """Context: the model's parameters hold ``w ~ N(mu, (lambda/N) diag(f + gamma_in)^-1)``.

        Run the forward and backward passes of a training step inside it; on exit the means are
        restored and ``step()`` may use the gradients (at the sample) and the sample. Also usable
        for Monte Carlo predictions (without a following ``step()``).
        """
        noise = [v.sqrt() * torch.randn_like(v) for v in self.posterior_variance().values()]
        return self._sampled(noise)

    # ------------------------------------------------------------------ statistics
    def record_stats(self) -> AbstractContextManager[None]:
        """Backward passes of a Fisher loss (batch mean, sampled targets) inside this context
        update ``f`` (EMA with decay ``beta2`` after a running-mean warm-up; see
        :mod:`acktr.noisy.diagonal`); ``.grad`` is left as it was."""
        return self.fisher.record(self.betas[1])

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Algorithm 1's update of the momentum and the means from the gradients at the sample."""
        self._check_step(closure)
        if not any(b.recorded for b in self.blocks.values()):
            raise RuntimeError(
                "NoisyAdam.step() before any Fisher statistics: backpropagate a Fisher loss "
                "(acktr.fisher_loss) inside `with opt.record_stats():` first"
            )
        lr = self._step_lr()
        beta1 = self.betas[0]
        gamma = self.damping_in + self.damping_ex
        correction = 1.0 - beta1 ** (self.steps + 1)
        for block, w in zip(self.blocks.values(), self._sample, strict=True):
            p = block.param
            if p.grad is None:
                continue
            v = p.grad + self.damping_in * w
            state = self.state[p]
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(p)
            m = state["exp_avg"]
            m.mul_(beta1).add_(v, alpha=1.0 - beta1)
            p.sub_(lr * (m / correction) / (block.F + gamma).to(p.dtype))
        self._sample = None
        self.steps += 1
        return None

    def remove_hooks(self) -> None:
        """Detach the optimizer's hooks from the model."""
        self.fisher.remove_hooks()

    # ------------------------------------------------------------------ state
    # state_dict(): momentum buffers and hyperparameters, plus the Fisher estimates and the step
    # count (NoisyOptimizer's).
    def _posterior_state(self) -> dict[str, object]:
        return {"fisher": {n: b.state_dict() for n, b in self.blocks.items()}}

    def _load_posterior_state(self, noisy: dict) -> None:
        if set(noisy["fisher"]) != set(self.blocks):
            raise ValueError(
                f"NoisyAdam state has parameters {sorted(noisy['fisher'])}, the model has "
                f"{sorted(self.blocks)}"
            )
        for name, s in noisy["fisher"].items():
            self.blocks[name].load_state_dict(s)
