"""Bayesian-MLP regression with a learned observation noise, trained by any of the three
variational methods; the protocol of Zhang et al. (2018), section 5.2 (after Hernandez-Lobato &
Adams 2015): one hidden layer, Gaussian likelihood, test RMSE and test log-likelihood.

Model: ``y | x, w, tau ~ N(f(x; w), 1 / tau)`` with ``f`` a ReLU MLP and a homoscedastic precision
``tau = exp(log_precision)`` with a ``Gamma(a0, b0)`` prior (shape, rate; default 6, 6 as the
paper). The weights get the variational posterior of the chosen optimizer; ``tau`` is a point
estimate (MAP: the per-data-point objective adds ``-(1/N) log Gamma(tau; a0, b0)``) fitted by
Adam on the same minibatches. The Fisher statistics use targets sampled from the model's
predictive ``N(f, 1/tau)`` (``tau`` detached), so the factors carry the noise precision, as the
Fisher of the Gaussian likelihood ``tau J^T J`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Gamma, Normal

from acktr.losses import fisher_loss
from acktr.noisy.adam import NoisyAdam
from acktr.noisy.bbb import BayesByBackprop
from acktr.noisy.kfac import NoisyKFAC
from acktr.schedules import check_choice

Method = Literal["bbb", "noisy_adam", "noisy_kfac"]
METHODS: tuple[str, ...] = ("bbb", "noisy_adam", "noisy_kfac")
VariationalOptimizer = BayesByBackprop | NoisyAdam | NoisyKFAC


class BayesianMLP(nn.Module):
    """``x -> Linear(in, hidden) -> ReLU -> Linear(hidden, 1)`` plus a learned noise precision.

    Args:
        in_features: input dimension.
        hidden: hidden units. Default 50 (the paper's regression network).
        a0: shape of the Gamma prior on the precision. Default 6.
        b0: rate of the Gamma prior on the precision. Default 6.
    """

    def __init__(self, in_features: int, hidden: int = 50, a0: float = 6.0, b0: float = 6.0):
        super().__init__()
        for name, v in (("in_features", in_features), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name, v in (("a0", a0), ("b0", b0)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.a0, self.b0 = float(a0), float(b0)
        self.log_precision = nn.Parameter(torch.tensor(math.log(a0 / b0)))  # the prior's mean

    def forward(self, x: Tensor) -> Tensor:
        """The predictive mean ``f(x; w)`` with the network's current weights, shape ``(B,)``."""
        return self.net(x).squeeze(-1)

    @property
    def precision(self) -> Tensor:
        return self.log_precision.exp()

    def log_likelihood(self, mean: Tensor, y: Tensor) -> Tensor:
        """Per-example ``log N(y | mean, 1 / tau)``, shape ``(B,)``."""
        lp = self.log_precision
        return 0.5 * (lp - math.log(2 * math.pi)) - 0.5 * lp.exp() * (y - mean) ** 2

    def log_prior_precision(self) -> Tensor:
        """``log Gamma(tau; a0, b0)`` (shape-rate)."""
        prior = Gamma(torch.tensor(self.a0), torch.tensor(self.b0))
        return prior.log_prob(self.precision.float()).to(self.log_precision.dtype)

    def fisher_distribution(self, mean: Tensor) -> Normal:
        """The predictive ``N(mean, 1 / tau)`` with ``tau`` detached: what Fisher targets are
        sampled from."""
        return Normal(mean, self.log_precision.detach().mul(-0.5).exp().expand_as(mean))


@dataclass
class FitConfig:
    """How one model is trained.

    Attributes:
        method: ``"bbb"``, ``"noisy_adam"`` or ``"noisy_kfac"``.
        epochs: passes over the training set. Default 100.
        batch_size: minibatch size. Default 10 (the paper's size for small datasets).
        lr: the weight optimizer's step size. Default 1e-2.
        kl_weight: ``lambda``. Default 1.
        prior_var: ``eta``. Default 1.
        damping_ex: extrinsic damping of NoisyAdam and NoisyKFAC. Default 1e-3.
        noise_lr: Adam step size of ``log_precision``. Default 1e-2.
        inverse_every: NoisyKFAC's ``T_inv``. Default 10.
        stat_decay: NoisyKFAC's factor decay ``1 - beta``. Default 0.99.
        bbb_init_std: BBB's initial posterior std. Default 1e-2.
    """

    method: Method = "noisy_kfac"
    epochs: int = 100
    batch_size: int = 10
    lr: float = 1e-2
    kl_weight: float = 1.0
    prior_var: float = 1.0
    damping_ex: float = 1e-3
    noise_lr: float = 1e-2
    inverse_every: int = 10
    stat_decay: float = 0.99
    bbb_init_std: float = 1e-2


def make_optimizer(model: BayesianMLP, n_data: int, cfg: FitConfig) -> VariationalOptimizer:
    """The variational optimizer of ``cfg.method`` over the network's weights."""
    check_choice("method", cfg.method, METHODS)
    common = {"kl_weight": cfg.kl_weight, "prior_var": cfg.prior_var}
    if cfg.method == "bbb":
        return BayesByBackprop(
            model.net, n_data, lr=cfg.lr, init_std=cfg.bbb_init_std, **common
        )
    if cfg.method == "noisy_adam":
        return NoisyAdam(model.net, n_data, lr=cfg.lr, damping_ex=cfg.damping_ex, **common)
    return NoisyKFAC(
        model.net,
        n_data,
        lr=cfg.lr,
        damping_ex=cfg.damping_ex,
        stat_decay=cfg.stat_decay,
        inverse_every=cfg.inverse_every,
        **common,
    )


def train_step(
    model: BayesianMLP,
    opt: VariationalOptimizer,
    noise_opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    n_data: int,
) -> float:
    """One minibatch: sample weights, record Fisher statistics (noisy methods), step. Returns the
    minibatch's per-data-point negative objective ``-mean log p(y|x,w) - log p(tau) / N``."""
    with opt.sample():
        mean = model(x)
        if isinstance(opt, (NoisyAdam, NoisyKFAC)) and getattr(opt, "stats_due", True):
            with opt.record_stats():
                fisher_loss(model.fisher_distribution(mean)).backward(retain_graph=True)
        opt.zero_grad()
        noise_opt.zero_grad()
        loss = -model.log_likelihood(mean, y).mean() - model.log_prior_precision() / n_data
        loss.backward()
    opt.step()
    noise_opt.step()
    return float(loss.detach())


def fit(
    x: Tensor, y: Tensor, cfg: FitConfig, seed: int = 0
) -> tuple[BayesianMLP, VariationalOptimizer, list[float]]:
    """Train a :class:`BayesianMLP` on standardized ``(x, y)`` (``y`` of shape ``(n,)``).

    Returns the model, its variational optimizer (which samples the posterior) and the mean
    training objective of every epoch.
    """
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"expected x (n, d) and y (n,), got {tuple(x.shape)} and {tuple(y.shape)}")
    torch.manual_seed(seed)
    model = BayesianMLP(x.shape[1]).to(x.dtype)
    n = x.shape[0]
    opt = make_optimizer(model, n, cfg)
    noise_opt = torch.optim.Adam([model.log_precision], lr=cfg.noise_lr)
    order = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=order)
        losses = [
            train_step(model, opt, noise_opt, x[idx], y[idx], n)
            for idx in perm.split(cfg.batch_size)
        ]
        history.append(sum(losses) / len(losses))
    return model, opt, history


@torch.no_grad()
def predictive_samples(
    model: BayesianMLP, opt: VariationalOptimizer, x: Tensor, n_samples: int = 100
) -> Tensor:
    """``f(x; w_s)`` for ``n_samples`` posterior samples ``w_s``, shape ``(n_samples, n)``."""
    out = []
    for _ in range(n_samples):
        with opt.sample():
            out.append(model(x))
    return torch.stack(out)


def evaluate(
    model: BayesianMLP,
    opt: VariationalOptimizer,
    x: Tensor,
    y: Tensor,
    y_scale: float = 1.0,
    n_samples: int = 100,
) -> dict[str, float]:
    """Test RMSE of the predictive mean and the test log-likelihood of the Monte Carlo predictive
    ``(1/S) sum_s N(y | f(x; w_s), 1/tau)``, both in the original units of ``y`` (standardized
    ``y`` times ``y_scale``; the log-likelihood shifts by ``-log y_scale``)."""
    f = predictive_samples(model, opt, x, n_samples)
    rmse = float(((f.mean(0) - y) ** 2).mean().sqrt()) * y_scale
    logp = model.log_likelihood(f, y.unsqueeze(0)).detach()  # (S, n)
    ll = torch.logsumexp(logp, 0) - math.log(n_samples) - math.log(y_scale)
    return {"rmse": rmse, "loglik": float(ll.mean())}
