"""Exact computations for small RBMs by enumeration: log Z, the moments and the Fisher matrix.

All results are float64 whatever the model's dtype. Enumeration runs over the smaller layer
(``2^min(n_visible, n_hidden)`` configurations, at most ``2^20``) for ``log Z``, and over the
hidden layer for the Fisher matrix, which is the covariance of the sufficient statistics
``g = (v, h, vec(v h^T))`` (FANG slides, "Fisher information of RBMs"):

    E[g]     = sum_h p(h) E[g | h],
    E[g g^T] = sum_h p(h) (E[g | h] E[g | h]^T + Cov[g | h]),      G = E[g g^T] - E[g] E[g]^T.

Given ``h`` the visible units are independent Bernoulli(mu) with ``mu = sigmoid(a + W h)``, so
``E[g | h] = (mu, h, vec(mu h^T))`` and ``Cov[g | h]`` only couples ``v_i`` with the
``m_ij = v_i h_j`` of the same ``i``: ``Cov(v_i, m_il | h) = mu_i (1 - mu_i) h_l`` and so on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from acktr.rbm.model import RBM

MAX_ENUMERATED_UNITS = 20
"""Largest layer :func:`exact_log_partition` and :func:`exact_fisher` enumerate (2^20 states)."""

MAX_FISHER_DIM = 6000
"""Largest number of sufficient statistics ``n_v + n_h + n_v n_h`` for :func:`exact_fisher`."""


def all_binary_states(n: int, start: int = 0, stop: int | None = None) -> Tensor:
    """Rows ``start..stop-1`` of the ``2^n`` binary vectors of length ``n`` (float64, bit ``k`` of
    the row index is column ``k``)."""
    stop = 2**n if stop is None else stop
    idx = torch.arange(start, stop, dtype=torch.int64)
    return ((idx[:, None] >> torch.arange(n)) & 1).to(torch.float64)


def _chunks(n: int, chunk: int):
    for start in range(0, 2**n, chunk):
        yield all_binary_states(n, start, min(start + chunk, 2**n))


def _params64(rbm: RBM) -> tuple[Tensor, Tensor, Tensor]:
    return (
        rbm.W.detach().double().cpu(),
        rbm.a.detach().double().cpu(),
        rbm.b.detach().double().cpu(),
    )


def _hidden_log_weights(W: Tensor, a: Tensor, b: Tensor, h: Tensor) -> Tensor:
    # log sum_v exp(-E(v, h)) = b^T h + sum_i softplus(a_i + W[i] h)
    return h @ b + F.softplus(h @ W.T + a).sum(1)


def exact_log_partition(rbm: RBM, chunk: int = 2**14) -> float:
    """``log Z`` by enumerating the smaller layer (at most 20 units).

    With ``n_h <= n_v``: ``log Z = logsumexp_h [b^T h + sum_i softplus(a_i + W[i] h)]``, otherwise
    ``log Z = logsumexp_v [-F(v)]``. Computed in float64 on the CPU.

    Args:
        rbm: the model.
        chunk: configurations per batch. Default ``2^14``.

    Raises:
        ValueError: if both layers have more than 20 units.
    """
    n_small = min(rbm.n_visible, rbm.n_hidden)
    if n_small > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"exact_log_partition enumerates the smaller layer, which must have at most "
            f"{MAX_ENUMERATED_UNITS} units; this RBM has n_visible={rbm.n_visible}, "
            f"n_hidden={rbm.n_hidden}. Use ais_log_partition instead"
        )
    W, a, b = _params64(rbm)
    parts = []
    if rbm.n_hidden <= rbm.n_visible:
        for h in _chunks(rbm.n_hidden, chunk):
            parts.append(torch.logsumexp(_hidden_log_weights(W, a, b, h), 0))
    else:
        for v in _chunks(rbm.n_visible, chunk):
            parts.append(torch.logsumexp(v @ a + F.softplus(v @ W + b).sum(1), 0))
    return float(torch.logsumexp(torch.stack(parts), 0))


def exact_log_likelihood(rbm: RBM, data: Tensor) -> float:
    """Mean ``log p(v)`` over the rows of binary ``data``, with ``log Z`` exact (float64)."""
    log_z = exact_log_partition(rbm)
    return float(-rbm.free_energy(data).double().mean()) - log_z


def exact_statistics(rbm: RBM, chunk: int = 2**12) -> tuple[Tensor, Tensor]:
    """Mean ``E[g]`` and covariance ``G = Cov(g)`` of ``g = (v, h, vec(v h^T))`` under the model.

    Enumerates the hidden layer (at most 20 units, and ``n_v + n_h + n_v n_h <= 6000``); see the
    module docstring for the equations. Float64, CPU.

    Returns:
        ``(mean, cov)`` with shapes ``(D,)`` and ``(D, D)``, ``D = n_v + n_h + n_v n_h``.
    """
    nv, nh = rbm.n_visible, rbm.n_hidden
    dim = nv + nh + nv * nh
    if nh > MAX_ENUMERATED_UNITS or dim > MAX_FISHER_DIM:
        raise ValueError(
            f"exact_statistics enumerates the hidden layer and builds a D x D matrix; it needs "
            f"n_hidden <= {MAX_ENUMERATED_UNITS} and D = n_v + n_h + n_v n_h <= {MAX_FISHER_DIM}, "
            f"got n_visible={nv}, n_hidden={nh} (D={dim})"
        )
    W, a, b = _params64(rbm)
    log_z = exact_log_partition(rbm)
    mean = torch.zeros(dim, dtype=torch.float64)
    second = torch.zeros(dim, dim, dtype=torch.float64)
    cond = torch.zeros(nv, nh + 1, nh + 1, dtype=torch.float64)  # sum_h p var_i [1,h][1,h]^T
    for h in _chunks(nh, chunk):
        p = torch.exp(_hidden_log_weights(W, a, b, h) - log_z)
        mu = torch.sigmoid(h @ W.T + a)
        m = torch.cat([mu, h, (mu[:, :, None] * h[:, None, :]).reshape(len(h), -1)], 1)
        mean += p @ m
        second += (m * p[:, None]).T @ m
        ext = torch.cat([torch.ones(len(h), 1, dtype=torch.float64), h], 1)
        cond += torch.einsum("c,ci,cp,cq->ipq", p, mu * (1 - mu), ext, ext)
    # Scatter E[Cov(g | h)] into the (v_i, m_i1 .. m_inh) blocks, one block per visible unit.
    rows = torch.arange(nv)[:, None]
    idx = torch.cat([rows, nv + nh + rows * nh + torch.arange(nh)[None, :]], 1)
    second[idx[:, :, None], idx[:, None, :]] += cond
    cov = second - torch.outer(mean, mean)
    return mean, 0.5 * (cov + cov.T)


def exact_fisher(rbm: RBM) -> Tensor:
    """The exact Fisher matrix ``G = Cov(g)`` in the natural parameters ``(a, b, vec(W))``.

    See :func:`exact_statistics` (whose second output this is) for limits and equations.
    """
    return exact_statistics(rbm)[1]


def gaussian_kl(cov_p: Tensor, cov_q: Tensor) -> float:
    """``KL(N(0, cov_p) || N(0, cov_q))`` in nats, in float64.

    ``0.5 (tr(cov_q^-1 cov_p) - D + log det cov_q - log det cov_p)``. Note the identity
    ``KL(N(0, A^-1) || N(0, B^-1)) = KL(N(0, B) || N(0, A))``: comparing approximate and exact
    inverse Fishers is comparing the Fishers with the arguments swapped.

    Raises:
        ValueError: on shape mismatch; ``torch.linalg.LinAlgError`` if either is not positive
            definite.
    """
    if cov_p.shape != cov_q.shape or cov_p.dim() != 2 or cov_p.shape[0] != cov_p.shape[1]:
        raise ValueError(
            f"gaussian_kl needs two square matrices of the same shape, got {tuple(cov_p.shape)} "
            f"and {tuple(cov_q.shape)}"
        )
    p, q = cov_p.double(), cov_q.double()
    lp, lq = torch.linalg.cholesky(p), torch.linalg.cholesky(q)
    trace = torch.cholesky_solve(p, lq).diagonal().sum()
    logdet = 2 * (lq.diagonal().log().sum() - lp.diagonal().log().sum())
    return float(0.5 * (trace - p.shape[0] + logdet))
