"""Annealed importance sampling (AIS) estimates of an RBM's ``log Z`` (Salakhutdinov & Murray 2008).

Intermediate distributions are geometric averages of a base model A (no weights, visible biases
``a0``) and the target B, over an extended space in which each model keeps its own hidden units:

    p_beta(v) ∝ exp(((1 - beta) a0 + beta a)^T v) * prod_j (1 + exp(beta (b_j + v^T W[:, j]))),

so ``p_0`` is the base (``log Z_0 = sum_i softplus(a0_i) + n_h log 2``) and ``p_1(v) ∝ exp(-F(v))``.
Each chain starts from an exact sample of ``p_0`` and moves through ``beta_1 < ... < beta_K = 1``
with one Gibbs sweep that leaves ``p_beta`` invariant; its log-weight is
``sum_k [log p*_{beta_k}(v_{k-1}) - log p*_{beta_{k-1}}(v_{k-1})]`` and
``Z_hat = Z_0 * mean(exp(log w))`` is unbiased for ``Z`` (so ``log Z_hat`` is biased low in
expectation; FANG slides, "Aside: estimating RBM log-likelihoods"). With ``data``, ``a0`` is the
data's log-odds, which makes the base close to the data and the annealing short. The confidence
interval is a percentile bootstrap over the chains' weights.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from acktr.rbm.model import RBM, check_positive_int, data_log_odds


class AISResult(NamedTuple):
    """An AIS estimate of ``log Z``.

    Attributes:
        log_z: the estimate ``log Z_0 + log mean(w)``.
        interval: ``(lower, upper)`` percentile-bootstrap confidence interval for ``log Z``.
        log_weights: ``(n_chains,)`` log importance weights (without ``log Z_0``).
        log_z_base: ``log Z_0`` of the base model.
    """

    log_z: float
    interval: tuple[float, float]
    log_weights: Tensor
    log_z_base: float

    @property
    def lower(self) -> float:
        return self.interval[0]

    @property
    def upper(self) -> float:
        return self.interval[1]


def _log_unnormalized(rbm: RBM, a0: Tensor, v: Tensor, beta: float) -> Tensor:
    vis = v @ ((1 - beta) * a0 + beta * rbm.a)
    return vis + F.softplus(beta * (v @ rbm.W + rbm.b)).sum(1)


def ais_log_partition(
    rbm: RBM,
    n_chains: int = 100,
    n_betas: int = 1000,
    data: Tensor | None = None,
    *,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    generator: torch.Generator | None = None,
) -> AISResult:
    """Estimate ``log Z`` of ``rbm`` by AIS with ``n_betas`` linearly spaced temperatures.

    Args:
        rbm: the model (any size; runs on its device and dtype).
        n_chains: independent AIS runs. Default 100.
        n_betas: number of inverse temperatures ``0 = beta_0 < ... < beta_{n-1} = 1`` (>= 2).
            Default 1000.
        data: optional binary ``(n, n_visible)`` data; the base model's visible biases are its
            log-odds (Salakhutdinov & Murray). Default ``None``: a uniform base (``a0 = 0``).
        confidence: level of the bootstrap interval, in (0, 1). Default 0.95.
        n_bootstrap: bootstrap resamples of the chains. Default 1000.
        generator: optional ``torch.Generator`` on the model's device, for reproducible runs.

    Returns:
        :class:`AISResult` ``(log_z, (lower, upper), log_weights, log_z_base)``.
    """
    check_positive_int("n_chains", n_chains)
    if isinstance(n_betas, bool) or not isinstance(n_betas, int) or n_betas < 2:
        raise ValueError(f"n_betas must be an integer >= 2, got {n_betas!r}")
    check_positive_int("n_bootstrap", n_bootstrap)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    W = rbm.W
    if data is None:
        a0 = torch.zeros_like(rbm.a)
    else:
        if data.dim() != 2 or data.shape[1] != rbm.n_visible:
            raise ValueError(
                f"data must have shape (n, {rbm.n_visible}) for this RBM, got {tuple(data.shape)}"
            )
        a0 = data_log_odds(data).to(W)
    log_z_base = float(F.softplus(a0).sum()) + rbm.n_hidden * math.log(2.0)
    betas = torch.linspace(0.0, 1.0, n_betas, dtype=torch.float64).tolist()
    with torch.no_grad():
        v = torch.bernoulli(torch.sigmoid(a0).expand(n_chains, -1), generator=generator)
        log_w = torch.zeros(n_chains, dtype=W.dtype, device=W.device)
        for prev, beta in zip(betas[:-1], betas[1:], strict=True):
            log_w += _log_unnormalized(rbm, a0, v, beta) - _log_unnormalized(rbm, a0, v, prev)
            if beta < 1.0:  # the last state is not used
                h = torch.bernoulli(torch.sigmoid(beta * (v @ W + rbm.b)), generator=generator)
                field = (1 - beta) * a0 + beta * (h @ W.T + rbm.a)
                v = torch.bernoulli(torch.sigmoid(field), generator=generator)
    log_w = log_w.double().cpu()
    estimate = log_z_base + _log_mean_exp(log_w)
    lower, upper = _bootstrap_interval(log_w, confidence, n_bootstrap, generator)
    return AISResult(estimate, (log_z_base + lower, log_z_base + upper), log_w, log_z_base)


def _log_mean_exp(x: Tensor, dim: int = -1) -> Tensor | float:
    out = torch.logsumexp(x, dim) - math.log(x.shape[dim])
    return float(out) if out.dim() == 0 else out


def _bootstrap_interval(
    log_w: Tensor, confidence: float, n_bootstrap: int, generator: torch.Generator | None
) -> tuple[float, float]:
    seed_gen = torch.Generator().manual_seed(
        int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
        if generator is not None
        else int(torch.randint(0, 2**31 - 1, (1,)).item())
    )
    n = log_w.shape[0]
    idx = torch.randint(0, n, (n_bootstrap, n), generator=seed_gen)
    stats = _log_mean_exp(log_w[idx], 1)
    tail = (1 - confidence) / 2
    q = torch.quantile(stats, torch.tensor([tail, 1 - tail], dtype=stats.dtype))
    return float(q[0]), float(q[1])


def log_likelihood_interval(
    rbm: RBM, data: Tensor, estimate: AISResult
) -> tuple[float, float, float]:
    """Mean ``log p(v)`` over ``data`` with ``log Z`` from AIS: ``(estimate, lower, upper)``.

    A larger ``log Z`` gives a lower likelihood, so the interval's ends swap.
    """
    neg_f = float(-rbm.free_energy(data).double().mean())
    return neg_f - estimate.log_z, neg_f - estimate.upper, neg_f - estimate.lower
