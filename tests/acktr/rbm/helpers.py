"""Brute-force oracles for the RBM tests: enumeration over both layers, float64."""

from __future__ import annotations

import torch
from torch import Tensor

from acktr.rbm import RBM
from acktr.rbm.exact import all_binary_states


def random_rbm(n_visible: int, n_hidden: int, scale: float = 1.0, seed: int = 0) -> RBM:
    """A float64 RBM with N(0, scale^2) weights and N(0, 1) biases."""
    gen = torch.Generator().manual_seed(seed)
    rbm = RBM(n_visible, n_hidden, weight_std=scale, generator=gen).double()
    rbm.a.copy_(torch.randn(n_visible, generator=gen, dtype=torch.float64))
    rbm.b.copy_(torch.randn(n_hidden, generator=gen, dtype=torch.float64))
    return rbm


def joint_states(rbm: RBM) -> tuple[Tensor, Tensor]:
    """Every ``(v, h)`` pair, as two aligned ``(2^(n_v + n_h), .)`` tensors."""
    v, h = all_binary_states(rbm.n_visible), all_binary_states(rbm.n_hidden)
    return v.repeat_interleave(len(h), 0), h.repeat(len(v), 1)


def brute_log_z(rbm: RBM) -> Tensor:
    """``log sum_{v, h} exp(-E(v, h))`` over both layers."""
    return brute_log_z_of(rbm.W, rbm.a, rbm.b)


def brute_log_z_of(W: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """:func:`brute_log_z` from plain tensors (differentiable with autograd)."""
    v, h = all_binary_states(len(a)), all_binary_states(len(b))
    v, h = v.repeat_interleave(len(h), 0), h.repeat(len(v), 1)
    return torch.logsumexp(v @ a + h @ b + ((v @ W) * h).sum(1), 0)


def brute_statistics(rbm: RBM) -> tuple[Tensor, Tensor]:
    """Mean and covariance of ``g = (v, h, vec(v h^T))`` over the joint distribution."""
    v, h = joint_states(rbm)
    p = torch.softmax(-rbm.energy(v, h), 0)
    g = torch.cat([v, h, (v[:, :, None] * h[:, None, :]).reshape(len(v), -1)], 1)
    mean = p @ g
    return mean, (g * p[:, None]).T @ g - torch.outer(mean, mean)
