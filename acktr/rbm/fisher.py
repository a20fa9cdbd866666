"""FANG's Gaussian graphical model of the RBM Fisher matrix (Grosse & Salakhutdinov).

The Fisher matrix of an RBM in its natural parameters ``eta = (a, b, vec(W))`` is the covariance
of the sufficient statistics ``g = (u, m)`` with ``u = (v, h)`` (the first-order statistics) and
``m_ij = v_i h_j`` (FANG slides, "Factorized Natural Gradient"). FANG models ``g`` as jointly
Gaussian with a directed (linear-Gaussian) graph:

* ``u`` is a full Gaussian; written as a chain of regressions, each ``u_k`` on ``u_1 .. u_{k-1}``:
  ``u_k = mean_k + sum_{l<k} B_kl (u_l - mean_l) + e_k``, ``e_k ~ N(0, d_k)``;
* each second-order statistic regresses on its two parents only:
  ``m_ij = E[m_ij] + alpha_ij (v_i - E[v_i]) + beta_ij (h_j - E[h_j]) + e_ij``,
  ``e_ij ~ N(0, d_ij)``. (For binary variables this graph is exact, since ``m_ij`` is a function
  of ``v_i`` and ``h_j``; the approximation is modelling them as Gaussian.)

Writing the regressions as ``g = B g + e`` with ``B`` strictly lower-triangular in the order
``(u, m)`` and ``D = diag(d)``, the model's covariance is ``(I - B)^-1 D (I - B)^-T``, so

    G^-1 ~= (I - B)^T D^-1 (I - B) = L D^-1 L^T,   L = (I - B)^T unit triangular,

a sparse factorization (slides: "Directed model corresponds to sparse Cholesky factorization"):
the ``m`` rows of ``B`` hold two entries each. Applying it to a gradient is a dense product with
the ``(n_v + n_h)^2`` first-order block plus ``O(n_v n_h)`` elementwise work, see
:meth:`GraphicalFisher.precondition`.

Fitting by maximum likelihood is linear regression (:meth:`GraphicalFisher.fit`): the
regressions of each ``u_k`` on its predecessors together are the Cholesky factorization of
``Cov(u)``, and each ``m_ij`` needs the 2x2 covariance of ``(v_i, h_j)`` and its covariances with
them. For binary units all of these follow from ``E[u]`` and ``E[u u^T]`` alone:
``E[m_ij] = E[v_i h_j]``, ``Cov(m_ij, v_i) = E[m_ij] (1 - E[v_i])``,
``Cov(m_ij, h_j) = E[m_ij] (1 - E[h_j])``, ``Var(m_ij) = E[m_ij] (1 - E[m_ij])``.

The centering trick (Cho et al. 2011; Montavon & Mueller 2012) is the same graph with fixed
rather than fitted parameters (slides, "Explaining the centering trick"): independent ``u`` with
unit variances, ``alpha_ij = E[h_j]``, ``beta_ij = E[v_i]``, ``d_ij = 1``
(:meth:`GraphicalFisher.centering`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GraphicalFisher:
    """A directed Gaussian graphical model over ``g = (v, h, vec(v h^T))``; see the module doc.

    Attributes:
        l_u: ``(n_u, n_u)`` unit lower-triangular ``(I - B_uu)^-1``, where ``B_uu`` holds the
            regression weights of each first-order statistic on its predecessors
            (``n_u = n_v + n_h``, order ``(v, h)``); stored this way so that a refit is one
            Cholesky factorization and applying ``I - B_uu`` is a triangular solve.
        d_u: ``(n_u,)`` conditional variances of the first-order statistics.
        alpha: ``(n_v, n_h)`` weight of ``v_i`` in the regression of ``m_ij``.
        beta: ``(n_v, n_h)`` weight of ``h_j`` in the regression of ``m_ij``.
        d_m: ``(n_v, n_h)`` conditional variances of the ``m_ij``.
    """

    l_u: Tensor
    d_u: Tensor
    alpha: Tensor
    beta: Tensor
    d_m: Tensor

    @property
    def b_uu(self) -> Tensor:
        """The first-order regression weights ``B_uu = I - l_u^-1`` (dense; for tests)."""
        eye = torch.eye(len(self.l_u), dtype=self.l_u.dtype, device=self.l_u.device)
        inv = torch.linalg.solve_triangular(self.l_u, eye, upper=False, unitriangular=True)
        return (eye - inv).tril(-1)

    @property
    def n_visible(self) -> int:
        return self.alpha.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.alpha.shape[1]

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, mean_u: Tensor, second_u: Tensor, n_visible: int, damping: float = 0.0
    ) -> GraphicalFisher:
        """Maximum-likelihood fit from the moments ``E[u]``, ``E[u u^T]`` of ``u = (v, h)``.

        Fits the model to ``Cov(g) + damping * I``: ``damping`` is added to every variance
        before the regressions, which bounds every conditional variance below by ``damping`` and
        so ``G^-1``'s approximation by ``1 / damping``.

        Args:
            mean_u: ``(n_u,)`` means of ``(v, h)``.
            second_u: ``(n_u, n_u)`` second moments of ``(v, h)``.
            n_visible: how many of the ``n_u`` come first as visible units.
            damping: added to the variances; >= 0, and > 0 unless ``Cov(u)`` is positive definite.
                Default 0.
        """
        if not damping >= 0.0:
            raise ValueError(f"damping must be >= 0, got {damping!r}")
        n_u = mean_u.shape[0]
        if second_u.shape != (n_u, n_u) or not 0 < n_visible < n_u:
            raise ValueError(
                f"need mean_u (n_u,), second_u (n_u, n_u) and 0 < n_visible < n_u; got shapes "
                f"{tuple(mean_u.shape)}, {tuple(second_u.shape)} and n_visible={n_visible}"
            )
        eye = torch.eye(n_u, dtype=mean_u.dtype, device=mean_u.device)
        cov = second_u - torch.outer(mean_u, mean_u)
        cov = 0.5 * (cov + cov.T) + damping * eye
        # Regressions of u_k on u_<k: Cov(u) = C C^T, C = L_c diag(c) with L_c unit lower;
        # then u = L_c e with Var(e_k) = c_k^2, i.e. I - B = L_c^-1 and d = c^2.
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise torch.linalg.LinAlgError(
                f"Cov(v, h) + {damping} I is not positive definite (leading minor {int(info)}); "
                "increase damping"
            )
        c = chol.diagonal()
        # Regressions of m_ij on (v_i, h_j).
        mv, mh = mean_u[:n_visible], mean_u[n_visible:]
        e_m = second_u[:n_visible, n_visible:]  # E[v_i h_j]
        var_v = cov.diagonal()[:n_visible, None]
        var_h = cov.diagonal()[None, n_visible:]
        cov_vh = cov[:n_visible, n_visible:]
        c_v = e_m * (1 - mv[:, None])  # Cov(m_ij, v_i)
        c_h = e_m * (1 - mh[None, :])  # Cov(m_ij, h_j)
        var_m = e_m * (1 - e_m) + damping
        det = var_v * var_h - cov_vh**2
        alpha = (var_h * c_v - cov_vh * c_h) / det
        beta = (var_v * c_h - cov_vh * c_v) / det
        d_m = (var_m - alpha * c_v - beta * c_h).clamp_min(
            max(damping, torch.finfo(cov.dtype).tiny)
        )
        return cls(chol / c, c**2, alpha, beta, d_m)

    @classmethod
    def centering(cls, offset_v: Tensor, offset_h: Tensor) -> GraphicalFisher:
        """The centering trick's implied model, offsets ``E[v] ~ offset_v``, ``E[h] ~ offset_h``.

        ``alpha_ij = offset_h[j]``, ``beta_ij = offset_v[i]``, unit variances, independent ``u``.
        Its :meth:`precondition` equals the centered-parameter gradient step mapped back to
        ``(W, a, b)`` (tested).
        """
        n_v, n_h = offset_v.shape[0], offset_h.shape[0]
        like = offset_v
        return cls(
            torch.eye(n_v + n_h, dtype=like.dtype, device=like.device),
            torch.ones(n_v + n_h, dtype=like.dtype, device=like.device),
            offset_h[None, :].expand(n_v, n_h).clone(),
            offset_v[:, None].expand(n_v, n_h).clone(),
            torch.ones(n_v, n_h, dtype=like.dtype, device=like.device),
        )

    def with_fitted_variances(self, mean_u: Tensor, second_u: Tensor) -> GraphicalFisher:
        """The same regression weights with maximum-likelihood variances for the moments given.

        Fitting only ``D`` for fixed ``B`` sets each conditional variance to the variance of its
        residual: ``d = diag((I - B) Cov(g) (I - B)^T)`` restricted to the graph's entries.
        Used to compare the centering trick's *weights* with FANG's, apart from its scale.
        """
        n_v = self.n_visible
        cov = second_u - torch.outer(mean_u, mean_u)
        lower = torch.eye(len(mean_u), dtype=cov.dtype, device=cov.device) - self.b_uu
        d_u = ((lower @ cov) * lower).sum(1)
        e_m = second_u[:n_v, n_v:]
        var_v, var_h = cov.diagonal()[:n_v, None], cov.diagonal()[None, n_v:]
        c_v, c_h = e_m * (1 - mean_u[:n_v, None]), e_m * (1 - mean_u[None, n_v:])
        a, b = self.alpha, self.beta
        d_m = (
            e_m * (1 - e_m)
            - 2 * a * c_v
            - 2 * b * c_h
            + a**2 * var_v
            + b**2 * var_h
            + 2 * a * b * cov[:n_v, n_v:]
        )
        return GraphicalFisher(self.l_u, d_u, a, b, d_m)

    # -- use ------------------------------------------------------------------------------------
    def precondition(self, g_w: Tensor, g_a: Tensor, g_b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The approximate natural gradient ``G^-1 g ~= (I - B)^T D^-1 (I - B) g`` as ``(W, a, b)``.

        Cost: one ``(n_u x n_u)`` triangular solve each way plus ``O(n_v n_h)`` elementwise.
        """
        n_v = self.n_visible
        g_u = torch.cat([g_a, g_b])
        r_u = self._solve(g_u, transpose=False)
        r_m = g_w - self.alpha * g_a[:, None] - self.beta * g_b[None, :]
        s_u, s_m = r_u / self.d_u, r_m / self.d_m
        out_u = self._solve(s_u, transpose=True)
        out_u = out_u - torch.cat([(self.alpha * s_m).sum(1), (self.beta * s_m).sum(0)])
        return s_m, out_u[:n_v], out_u[n_v:]

    def _solve(self, x: Tensor, transpose: bool) -> Tensor:
        # (I - B_uu) x = l_u^-1 x, and (I - B_uu)^T x = l_u^-T x
        mat = self.l_u.T if transpose else self.l_u
        out = torch.linalg.solve_triangular(mat, x[:, None], upper=transpose, unitriangular=True)
        return out[:, 0]

    def residual_operator(self) -> Tensor:
        """Dense ``I - B`` in the order ``(a, b, vec(W))`` (for tests and small comparisons)."""
        n_v, n_h = self.n_visible, self.n_hidden
        n_u, dim = n_v + n_h, n_v + n_h + n_v * n_h
        op = torch.eye(dim, dtype=self.d_u.dtype, device=self.d_u.device)
        op[:n_u, :n_u] -= self.b_uu
        rows = n_u + torch.arange(n_v * n_h, device=op.device)
        i = torch.arange(n_v, device=op.device).repeat_interleave(n_h)
        j = torch.arange(n_h, device=op.device).repeat(n_v)
        op[rows, i] -= self.alpha.reshape(-1)
        op[rows, n_v + j] -= self.beta.reshape(-1)
        return op

    def variances(self) -> Tensor:
        """The diagonal ``D`` in the order ``(a, b, vec(W))``."""
        return torch.cat([self.d_u, self.d_m.reshape(-1)])

    def precision(self) -> Tensor:
        """Dense ``G^-1 ~= (I - B)^T D^-1 (I - B)``."""
        op = self.residual_operator()
        return op.T @ (op / self.variances()[:, None])

    def covariance(self) -> Tensor:
        """Dense ``G ~= (I - B)^-1 D (I - B)^-T``: the model's approximation of the Fisher."""
        inv = torch.linalg.inv(self.residual_operator())
        return (inv * self.variances()) @ inv.T


def hidden_moments(v: Tensor, p_h: Tensor) -> tuple[Tensor, Tensor]:
    """Sums of ``u = (v, h)`` and ``u u^T`` over samples, with ``h`` Rao-Blackwellized.

    Given ``v`` the ``h_j`` are independent Bernoulli(``p_h``), so ``E[u | v] = (v, p_h)`` and
    ``E[u u^T | v] = E[u | v] E[u | v]^T + diag(0, p_h (1 - p_h))``.

    Returns:
        ``(sum_u, sum_uu)`` over the rows; divide by the number of rows for the moments.
    """
    u = torch.cat([v, p_h], 1)
    sum_uu = u.T @ u
    n_v = v.shape[1]
    idx = torch.arange(n_v, u.shape[1], device=u.device)
    sum_uu[idx, idx] += (p_h * (1 - p_h)).sum(0)
    return u.sum(0), sum_uu
