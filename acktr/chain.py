"""The inverse of block-tridiagonal K-FAC: the chain model between layers (Martens & Grosse 2015,
section 4.3), as free functions of the Kronecker factors.

Notation of the paper: layer ``i`` (``i = 1..l``) computes ``s_i = W_i a_bar_{i-1}``, its
output derivative is ``g_i``, and the Kronecker-factored Fisher has blocks

    F~_{i,j} = A_{i-1,j-1} (x) G_{i,j},  A_{i,j} = E[a_bar_i a_bar_j^T],  G_{i,j} = E[g_i g_j^T].

Block-diagonal K-FAC keeps only ``F~_{i,i}``. The block-tridiagonal approximation ``F^`` keeps
``F~`` on the diagonal and first off-diagonal blocks and assumes that ``F^^-1`` is
block-tridiagonal: the layers' gradients ``w_i = vec(DW_i)`` form a linear-Gaussian chain
(a directed model running backwards from the last layer, section 4.3),

    w_i = Psi_{i,i+1} w_{i+1} + eps_i,   eps_i ~ N(0, Sigma_{i|i+1}),   w_l ~ N(0, Sigma_l),
    Psi_{i,i+1} = F~_{i,i+1} F~_{i+1,i+1}^-1 = Psi^A_{i-1,i} (x) Psi^G_{i,i+1},
    Psi^A_{i-1,i} = A_{i-1,i} A_{i,i}^-1,   Psi^G_{i,i+1} = G_{i,i+1} G_{i+1,i+1}^-1,
    Sigma_{i|i+1} = F~_{i,i} - Psi_{i,i+1} F~_{i+1,i+1} Psi_{i,i+1}^T
                  = A_{i-1,i-1} (x) G_{i,i} - Psi^A A_{i,i} Psi^A^T (x) Psi^G G_{i+1,i+1} Psi^G^T,
    Sigma_l = F~_{l,l},

so that ``F^^-1 = Xi^T Lambda Xi`` with ``Xi`` the block-upper-bidiagonal matrix with identities
on the diagonal and ``-Psi_{i,i+1}`` above it, and ``Lambda = diag(Sigma_{1|2}^-1, ...,
Sigma_{l-1|l}^-1, Sigma_l^-1)``. ``Sigma_{i|i+1}`` is a difference of two Kronecker products; it
is inverted with the eigen trick of appendix B: with ``K_1^T A K_1 = I``, ``K_1^T C K_1 =
diag(s_1)`` (and ``K_2, s_2`` for ``B, D``),

    (A (x) B - C (x) D)^-1 = (K_1 (x) K_2) (I - diag(s_1) (x) diag(s_2))^-1 (K_1 (x) K_2)^T.

Damping (section 6.3): factored Tikhonov damping is applied to the *diagonal* factors only,
``A_{i-1,i-1} + pi_i sqrt(lambda) I`` and ``G_{i,i} + sqrt(lambda) / pi_i I`` with
``pi_i = sqrt((tr A / dim A) / (tr G / dim G))``, everywhere they appear (in ``Psi`` and
``Sigma`` too); the cross factors are left as they are. The result is the exact block-tridiagonal
approximation of the damped matrix ``F~_damped`` (diagonal blocks damped).

Code conventions are those of :mod:`acktr.blocks`: a layer's gradient is the matrix
``V = [dW | db]`` of shape ``(out, in [+1])``, dense matrices act on ``V.flatten()``
(row-major), so the dense ``F~_{i,j}`` is ``kron(G_{i,j}, A_{i-1,j-1})`` and it acts on a matrix
as ``V -> G_{i,j} V A_{i-1,j-1}^T``. Layers are numbered from 0 in the code: ``cross_a[k]`` is
the paper's ``A_{i-1,i}`` and ``cross_g[k]`` its ``G_{i,i+1}`` with ``i = k + 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from acktr.blocks import tikhonov_pi
from acktr.linalg import CurvatureLinAlgError, safe_eigh


def damped_factors(a: Tensor, g: Tensor, damping: float) -> tuple[Tensor, Tensor]:
    """Factored Tikhonov damping (Martens & Grosse 2015, section 6.3): ``(A + pi sqrt(lambda) I,
    G + sqrt(lambda) / pi I)`` with ``pi = sqrt((tr A / dim A) / (tr G / dim G))``; ``damping=0``
    returns the factors unchanged."""
    if damping == 0:
        return a, g
    pi = tikhonov_pi(a.trace(), a.shape[0], g.trace(), g.shape[0])
    root = math.sqrt(damping)
    eye_a = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    eye_g = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    return a + pi * root * eye_a, g + root / pi * eye_g


def generalized_eigh(base: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """``(K, s)`` with ``K^T base K = I`` and ``K^T other K = diag(s)`` for a positive definite
    ``base`` and a symmetric ``other`` (appendix B: ``K = base^-1/2 E`` with ``E`` the
    eigenvectors of ``base^-1/2 other base^-1/2``).

    Raises:
        CurvatureLinAlgError: if ``base`` is not positive definite or an eigendecomposition fails.
    """
    d, q = safe_eigh(base)
    if float(d.min()) <= 0.0:
        raise CurvatureLinAlgError(
            "a damped diagonal factor is singular: the block-tridiagonal inverse needs damping > 0"
            " or full-rank factors"
        )
    w = q / d.sqrt()
    m = w.T @ other @ w
    s, e = torch.linalg.eigh(0.5 * (m + m.T))
    return w @ e, s


@dataclass
class ChainInverse:
    """The factored ``F^^-1 = Xi^T Lambda Xi`` of a chain of ``L`` layers (section 4.3).

    Attributes:
        psi_a: ``L - 1`` matrices ``Psi^A_{i-1,i} = A_{i-1,i} A_{i,i}^-1`` (damped ``A_{i,i}``).
        psi_g: ``L - 1`` matrices ``Psi^G_{i,i+1} = G_{i,i+1} G_{i+1,i+1}^-1``.
        k_a, k_g: ``L`` generalized eigenbases of ``Sigma``'s factors (appendix B).
        denom: ``L`` matrices ``1 - s_G s_A^T`` (``(out, in [+1])``): ``Sigma^-1`` divides by it
            in those bases. For the last layer ``s = 0`` and ``Sigma_l^-1 = F~_{l,l}^-1``.
        damping: the damping ``lambda`` the factors were damped with.
    """

    psi_a: list[Tensor]
    psi_g: list[Tensor]
    k_a: list[Tensor]
    k_g: list[Tensor]
    denom: list[Tensor]
    damping: float

    def tensors(self) -> dict[str, object]:
        return {"psi_a": self.psi_a, "psi_g": self.psi_g, "k_a": self.k_a, "k_g": self.k_g,
                "denom": self.denom, "damping": self.damping}

    def to(self, **kw: object) -> ChainInverse:
        def move(ts: list[Tensor]) -> list[Tensor]:
            return [t.to(**kw) for t in ts]  # type: ignore[arg-type]

        return ChainInverse(move(self.psi_a), move(self.psi_g), move(self.k_a), move(self.k_g),
                            move(self.denom), self.damping)


def chain_inverse(
    a: list[Tensor], g: list[Tensor], cross_a: list[Tensor], cross_g: list[Tensor], damping: float
) -> ChainInverse:
    """Factor the block-tridiagonal approximation's inverse from the Kronecker factors.

    Args:
        a, g: the ``L`` diagonal factors ``A_{i-1,i-1}`` (``(in+1, in+1)``) and ``G_{i,i}``.
        cross_a, cross_g: the ``L - 1`` cross factors ``A_{i-1,i}`` and ``G_{i,i+1}``.
        damping: ``lambda >= 0``, applied to the diagonal factors (section 6.3); with 0 the
            diagonal factors must be positive definite.

    Computed in float64 (the chain's conditional covariances are differences of nearly equal
    matrices), returned in the dtype of ``a[0]``.

    Raises:
        CurvatureLinAlgError: on a singular damped factor or a failed eigendecomposition.
    """
    n = len(a)
    if not (len(g) == n and len(cross_a) == len(cross_g) == n - 1):
        raise ValueError(f"need L diagonal and L-1 cross factors, got {len(a)}, {len(g)}, "
                         f"{len(cross_a)}, {len(cross_g)}")
    dtype = a[0].dtype
    pairs = [damped_factors(x.double(), y.double(), damping) for x, y in zip(a, g, strict=True)]
    ad, gd = [p[0] for p in pairs], [p[1] for p in pairs]
    psi_a, psi_g, k_a, k_g, denom = [], [], [], [], []
    for k in range(n):
        if k < n - 1:
            xa, xg = cross_a[k].double(), cross_g[k].double()
            # Psi^A = A_{i-1,i} A_{i,i}^-1 (A_{i,i} symmetric), likewise Psi^G.
            pa = torch.linalg.solve(ad[k + 1], xa.T).T
            pg = torch.linalg.solve(gd[k + 1], xg.T).T
            # Psi^A A_{i,i} Psi^A^T = A_{i-1,i} A_{i,i}^-1 A_{i-1,i}^T, likewise for G.
            ka, sa = generalized_eigh(ad[k], pa @ xa.T)
            kg, sg = generalized_eigh(gd[k], pg @ xg.T)
            psi_a.append(pa)
            psi_g.append(pg)
        else:
            ka, sa = generalized_eigh(ad[k], torch.zeros_like(ad[k]))
            kg, sg = generalized_eigh(gd[k], torch.zeros_like(gd[k]))
        # Both generalized eigenvalues lie in [0, 1) when the joint second moment of adjacent
        # layers is PSD (a Schur complement); clamping only guards round-off.
        sa, sg = sa.clamp(0.0, 1.0), sg.clamp(0.0, 1.0)
        d = (1.0 - torch.outer(sg, sa)).clamp_min(torch.finfo(torch.float64).eps)
        k_a.append(ka)
        k_g.append(kg)
        denom.append(d)
    return ChainInverse(psi_a, psi_g, k_a, k_g, denom, float(damping)).to(dtype=dtype)


def apply_chain_inverse(inv: ChainInverse, grads: list[Tensor]) -> list[Tensor]:
    """``F^^-1 v = Xi^T Lambda Xi v`` for the gradient matrices ``v = (V_1, ..., V_l)``.

    Each ``V`` may carry leading batch dimensions (``(..., out, in [+1])``). Steps:
    ``u_i = V_i - Psi^G_{i,i+1} V_{i+1} Psi^A_{i-1,i}^T`` (``Xi v``), ``z_i = Sigma_{i|i+1}^-1
    u_i = K_G [(K_G^T u_i K_A) / (1 - s_G s_A^T)] K_A^T`` (appendix B), then
    ``out_i = z_i - Psi^G_{i-1,i}^T z_{i-1} Psi^A_{i-2,i-1}`` (``Xi^T z``).
    """
    n = len(grads)
    u = [
        grads[k] - inv.psi_g[k] @ grads[k + 1] @ inv.psi_a[k].T if k < n - 1 else grads[k]
        for k in range(n)
    ]
    z = [
        inv.k_g[k] @ ((inv.k_g[k].T @ u[k] @ inv.k_a[k]) / inv.denom[k]) @ inv.k_a[k].T
        for k in range(n)
    ]
    return [z[0]] + [z[k] - inv.psi_g[k - 1].T @ z[k - 1] @ inv.psi_a[k - 1] for k in range(1, n)]


def chain_inverse_to_dense(inv: ChainInverse, shapes: list[tuple[int, int]]) -> Tensor:
    """``F^^-1`` as a dense matrix (for tests and studies), on the layers' ``[dW | db].flatten()``
    concatenated in chain order; ``shapes`` are the gradient matrices' ``(out, in [+1])``."""
    sizes = [g * a for g, a in shapes]
    eye = torch.eye(sum(sizes), dtype=inv.k_a[0].dtype, device=inv.k_a[0].device)
    basis = [
        col.reshape(-1, *shape) for col, shape in zip(eye.split(sizes, dim=1), shapes, strict=True)
    ]
    out = apply_chain_inverse(inv, basis)
    return torch.cat([o.flatten(1) for o in out], dim=1).T
