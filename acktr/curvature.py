"""Exact curvature-vector products of the Gauss-Newton / Fisher matrix, without Jacobians.

For a loss ``h(theta) = L(f(theta))`` of the model outputs ``z = f(theta)``, the generalized
Gauss-Newton matrix is ``G = J^T H_L J`` with ``J = dz/dtheta`` and ``H_L = d^2 L / dz^2``. For the
negative log-likelihoods of the distributions :func:`acktr.fisher_loss` knows (softmax
cross-entropy, squared error, logistic cross-entropy, with outputs in natural parameters) ``H_L``
is the Fisher of the output distribution, so ``G`` is the exact Fisher (Martens & Grosse 2015,
section 5; Martens 2014, section 9.2). Products with it take two autograd passes and never form
``J``:

* ``J v`` by the double-backward trick: ``u -> J^T u`` is linear in ``u``; differentiating
  ``<J^T u, v>`` with respect to ``u`` gives ``J v`` (one backward with ``create_graph``, then one
  backward per vector);
* ``H_L t`` by differentiating the loss twice with respect to the outputs (exact for whatever
  loss the caller has), or from the closed form of a distribution (:func:`fisher_output_product`);
* ``J^T w`` by an ordinary backward.

The quadratic forms the adaptive K-FAC step needs, ``v_i^T G v_j``, are ``<J v_i, H_L J v_j>``:
no ``J^T`` product at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from acktr.losses import FISHER_KINDS, FisherKind

OutputProduct = Callable[[Tensor], Tensor]
"""``t -> H_L t`` for a tangent ``t`` shaped like the model outputs."""


def jacobian_vector_products(
    outputs: Tensor, params: Sequence[Tensor], vectors: Sequence[Sequence[Tensor]]
) -> list[Tensor]:
    """``J v`` for each ``v`` in ``vectors`` (each a list shaped like ``params``).

    ``outputs`` must still have its autograd graph to ``params``; it is kept (``retain_graph``).
    Parameters that do not reach the outputs contribute nothing.
    """
    u = torch.zeros_like(outputs, requires_grad=True)
    jt_u = torch.autograd.grad(outputs, params, u, create_graph=True, allow_unused=True)
    used = [(g, i) for i, g in enumerate(jt_u) if g is not None and g.requires_grad]
    if not used:
        return [torch.zeros_like(outputs) for _ in vectors]
    # all vectors in one batched backward (vmap over the grad_outputs)
    stacked = [torch.stack([v[i].to(g.dtype) for v in vectors]) for g, i in used]
    (jv,) = torch.autograd.grad(
        [g for g, _ in used], u, stacked, retain_graph=True, is_grads_batched=True
    )
    return list(jv.detach().unbind(0))


def loss_output_product(loss: Tensor, outputs: Tensor) -> OutputProduct:
    """``t -> H_L t`` with ``H_L`` the Hessian of ``loss`` with respect to ``outputs``, by double
    backward through the loss only (cheap: the network is not traversed).

    ``outputs`` must be a tensor ``loss`` was computed from (a leaf is fine).
    """
    (grad,) = torch.autograd.grad(loss, outputs, create_graph=True)

    def product(t: Tensor) -> Tensor:
        if not grad.requires_grad:  # a loss linear in the outputs: no curvature
            return torch.zeros_like(t)
        (h,) = torch.autograd.grad(grad, outputs, t, retain_graph=True)
        return h.detach()

    return product


def fisher_output_product(outputs: Tensor, kind: FisherKind, scale: float = 1.0) -> OutputProduct:
    """``t -> H t`` with ``H`` the Fisher of the output distribution ``kind`` in natural parameters,
    under the library's loss convention (per-example losses summed over non-batch dimensions,
    batch mean, as :func:`acktr.fisher_loss`): ``scale / B`` times

    * ``"gaussian"``: ``t`` (unit variance: the Gauss-Newton matrix of ``0.5 ||z - y||^2``);
    * ``"categorical"``: ``p * t - p <p, t>`` over the last dimension, ``p = softmax(z)``;
    * ``"bernoulli"``: ``sigma(z) (1 - sigma(z)) t``.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}")
    z = outputs.detach()
    factor = scale / (z.shape[0] if z.dim() > 0 else 1)
    if kind == "gaussian":
        return lambda t: t * factor
    if kind == "bernoulli":
        s = torch.sigmoid(z)
        w = s * (1 - s) * factor
        return lambda t: t * w
    p = torch.softmax(z, dim=-1)
    return lambda t: (p * t - p * (p * t).sum(-1, keepdim=True)) * factor


def ggn_vector_product(
    outputs: Tensor, params: Sequence[Tensor], vector: Sequence[Tensor],
    output_product: OutputProduct,
) -> list[Tensor]:
    """``G v = J^T H_L J v``, shaped like ``params`` (for tests and diagnostics; the adaptive step
    needs only the quadratic forms of :func:`quadratic_forms`)."""
    (jv,) = jacobian_vector_products(outputs, params, [vector])
    grads = torch.autograd.grad(
        outputs, params, output_product(jv), retain_graph=True, allow_unused=True
    )
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def quadratic_forms(jvs: Sequence[Tensor], output_product: OutputProduct) -> Tensor:
    """The matrix ``[v_i^T G v_j]`` from the products ``J v_i`` (float64, symmetric)."""
    hjv = [output_product(j) for j in jvs]
    n = len(jvs)
    out = torch.zeros(n, n, dtype=torch.float64, device=jvs[0].device)
    for i in range(n):
        for j in range(i, n):
            out[i, j] = out[j, i] = (jvs[i].double() * hjv[j].double()).sum()
    return out


def match_fisher_kind(
    output_product: OutputProduct, outputs: Tensor, kinds: Sequence[FisherKind] = FISHER_KINDS,
    rtol: float = 1e-3,
) -> dict[str, float]:
    """Which output distributions' Fisher the loss curvature ``output_product`` equals, up to a
    positive scale: ``{kind: scale}`` for every kind within ``rtol`` (relative residual of the
    best scaled fit on a random tangent). Several kinds match when they coincide at these
    outputs (e.g. Gaussian and Bernoulli at constant logits)."""
    z = outputs.detach()
    t = torch.randn(z.shape, dtype=torch.float64, device=z.device).to(z.dtype)
    target = output_product(t).double()
    norm = target.norm()
    matches: dict[str, float] = {}
    if not torch.isfinite(norm) or norm == 0:
        return matches
    for kind in kinds:
        ref = fisher_output_product(z, kind)(t).double()
        denom = (ref * ref).sum()
        if denom == 0:
            continue
        scale = float((ref * target).sum() / denom)
        residual = float((target - scale * ref).norm() / norm)
        if scale > 0 and residual < rtol:
            matches[kind] = scale
    return matches
