"""Losses whose gradients, backpropagated inside ``record_stats()``, give Fisher statistics.

The Fisher is ``Cov(d log p(y|x) / d theta)`` with ``y`` sampled from the *model* (REFERENCE 1;
Martens & Grosse 2015, section 5): each loss here samples ``y`` from the model's predictive
distribution (detached) and returns the negative log-likelihood of that sample. All losses follow
one convention: the per-example loss sums over every non-batch dimension and the batch (dim 0)
is averaged, matching the preconditioner's default ``loss_reduction="mean"``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution

FisherKind = Literal["categorical", "gaussian", "bernoulli"]
FISHER_KINDS: tuple[str, ...] = ("categorical", "gaussian", "bernoulli")


def _finite_rows(probs: Tensor) -> Tensor:
    """Replace rows that are not finite probabilities by uniform ones, so that sampling never
    raises: the Fisher loss is then NaN and the optimizer skips those statistics (with a
    warning) instead of the run crashing."""
    bad = ~torch.isfinite(probs).all(-1, keepdim=True)
    return torch.where(bad, torch.full_like(probs, 1.0 / probs.shape[-1]), probs)


def _batch(outputs: Tensor) -> int:
    return outputs.shape[0] if outputs.dim() > 0 else 1


def fisher_loss(
    outputs: Tensor | Distribution,
    kind: FisherKind | None = None,
    *,
    targets: Tensor | None = None,
) -> Tensor:
    """The Fisher loss of a model's outputs: ``-mean_batch log p(y_sampled | outputs)``.

    Args:
        outputs: the network outputs in natural parameters: logits ``(B, C)`` (or ``(B, ..., C)``)
            for ``"categorical"``, means ``(B, ...)`` for ``"gaussian"``, logits ``(B, ...)`` for
            ``"bernoulli"``; or a ``torch.distributions.Distribution`` (then ``kind`` is None and
            a sample of it is scored, e.g. a Gaussian policy with a learned std).
        kind: ``"categorical"`` (softmax; classes sampled from the softmax), ``"gaussian"``
            (``y ~ N(outputs, 1)``: the Gauss-Newton metric of the squared error
            ``0.5 * ||outputs - y||^2``), or ``"bernoulli"`` (sigmoid outputs).
        targets: the *empirical* Fisher: use these labels instead of samples. This is a
            different and generally worse matrix than the Fisher; it is an explicit opt-in.

    Returns:
        A scalar; its gradient is the sampled (or empirical) log-likelihood gradient.
    """
    if isinstance(outputs, Distribution):
        if kind is not None:
            raise ValueError("pass either a Distribution (kind=None) or a tensor with a kind")
        y = outputs.sample() if targets is None else targets
        logp = outputs.log_prob(y.detach())
        return -logp.reshape(logp.shape[0], -1).sum(1).mean() if logp.dim() else -logp
    if kind not in FISHER_KINDS:
        raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}")
    b = _batch(outputs)
    if kind == "categorical":
        logits = outputs.reshape(-1, outputs.shape[-1])
        if targets is None:
            with torch.no_grad():
                probs = _finite_rows(torch.softmax(logits.float(), -1))
                targets = torch.multinomial(probs, 1).squeeze(1)
        return F.cross_entropy(logits, targets.reshape(-1), reduction="sum") / b
    if kind == "gaussian":
        if targets is None:
            with torch.no_grad():
                targets = outputs + torch.randn_like(outputs)
        return 0.5 * (outputs - targets).pow(2).sum() / b
    if targets is None:
        with torch.no_grad():
            probs = torch.sigmoid(outputs).nan_to_num(0.5)
            targets = (torch.rand_like(probs) < probs).to(probs.dtype)  # 3x faster than bernoulli
    return F.binary_cross_entropy_with_logits(outputs, targets, reduction="sum") / b


def gauss_newton_losses(outputs: Tensor) -> list[Tensor]:
    """Losses giving the *exact* Gauss-Newton statistics of ``0.5 * ||outputs - y||^2``.

    One loss per output coordinate ``k``: ``sqrt(K) * mean_b r_bk * outputs[b, k]`` with random
    signs ``r``. Backpropagate each inside one ``record_stats()`` context; as the context
    averages ``G`` over its passes, ``G = mean_k K J^T e_k e_k^T J = J^T J`` exactly (the signs
    square away), which is the Gauss-Newton matrix without sampling noise. The signs keep the
    per-example gradients zero-mean, so the diagonal fallback stays unbiased. Costs ``K``
    backward passes, so it is for small output dimensions and for tests.
    """
    b = _batch(outputs)
    flat = outputs.reshape(b, -1)
    k = flat.shape[1]
    with torch.no_grad():
        signs = torch.randint(0, 2, flat.shape, device=flat.device).to(flat.dtype) * 2 - 1
    scale = math.sqrt(k) / b
    return [scale * (signs[:, i] * flat[:, i]).sum() for i in range(k)]
