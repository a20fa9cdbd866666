"""FANG's graphical model of the Fisher and the centering trick's, against the exact Fisher."""

from __future__ import annotations

import pytest
import torch

from acktr.rbm import GraphicalFisher, exact_statistics, flatten_parameters, gaussian_kl
from acktr.rbm.exact import all_binary_states
from acktr.rbm.fisher import hidden_moments
from tests.acktr.rbm.helpers import random_rbm

pytestmark = pytest.mark.usefixtures("float64")

N_V, N_H = 5, 3
N_U = N_V + N_H


def _exact_fit(rbm, damping=0.0):
    mean, cov = exact_statistics(rbm)
    mean_u = mean[:N_U]
    second_u = cov[:N_U, :N_U] + torch.outer(mean_u, mean_u)
    return GraphicalFisher.fit(mean_u, second_u, N_V, damping), cov


def _random_direction(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(N_V, N_H, generator=gen),
        torch.randn(N_V, generator=gen),
        torch.randn(N_H, generator=gen),
    )


def test_fit_reproduces_the_moments_the_graph_models_exactly():
    fisher, cov = _exact_fit(random_rbm(N_V, N_H, scale=1.0))
    approx = fisher.covariance()
    # The first-order block is a full Gaussian; each m_ij keeps its variance and its
    # covariances with its parents v_i and h_j (least squares preserves them).
    torch.testing.assert_close(approx[:N_U, :N_U], cov[:N_U, :N_U], atol=1e-12, rtol=0)
    torch.testing.assert_close(approx.diagonal(), cov.diagonal(), atol=1e-12, rtol=0)
    rows = N_U + torch.arange(N_V * N_H)
    i, j = torch.arange(N_V).repeat_interleave(N_H), torch.arange(N_H).repeat(N_V)
    torch.testing.assert_close(approx[rows, i], cov[rows, i], atol=1e-12, rtol=0)
    torch.testing.assert_close(approx[rows, N_V + j], cov[rows, N_V + j], atol=1e-12, rtol=0)
    # ... but not the rest: it is an approximation.
    assert (approx - cov).abs().max() > 1e-4


def test_first_order_regressions_are_least_squares_on_the_predecessors():
    fisher, cov = _exact_fit(random_rbm(N_V, N_H, seed=1))
    for k in range(1, N_U):
        coef = torch.linalg.solve(cov[:k, :k], cov[:k, k])
        torch.testing.assert_close(fisher.b_uu[k, :k], coef)
        assert float(fisher.d_u[k]) == pytest.approx(float(cov[k, k] - cov[:k, k] @ coef))


def test_precondition_is_the_sparse_form_of_the_dense_inverse():
    fisher, _ = _exact_fit(random_rbm(N_V, N_H, seed=2), damping=0.01)
    g = _random_direction()
    dense = torch.linalg.solve(fisher.covariance(), flatten_parameters(*g))
    torch.testing.assert_close(flatten_parameters(*fisher.precondition(*g)), dense)
    torch.testing.assert_close(fisher.precision() @ fisher.covariance(), torch.eye(len(dense)))


def test_damping_fits_the_damped_covariance():
    rbm = random_rbm(N_V, N_H, seed=3)
    fisher, cov = _exact_fit(rbm, damping=0.5)
    approx = fisher.covariance()
    damped = cov + 0.5 * torch.eye(len(cov))
    torch.testing.assert_close(approx[:N_U, :N_U], damped[:N_U, :N_U])
    torch.testing.assert_close(approx.diagonal(), damped.diagonal())
    assert bool((fisher.variances() >= 0.5 - 1e-12).all())


def test_fang_is_closer_to_the_fisher_than_centering_and_the_diagonal():
    # The maximum-likelihood fit minimizes KL(N(0, G) || N(0, G_approx)) over the graph;
    # centering is one point of the same family, the diagonal a sparser graph.
    rbm = random_rbm(N_V, N_H, scale=1.0, seed=4)
    fisher, cov = _exact_fit(rbm)
    mean = exact_statistics(rbm)[0]
    centering = GraphicalFisher.centering(mean[:N_V], mean[N_V:N_U]).covariance()
    scale = float(torch.linalg.solve(centering, cov).diagonal().sum()) / len(cov)
    kl_fang = gaussian_kl(cov, fisher.covariance())
    kl_centering = gaussian_kl(cov, scale * centering)
    kl_diagonal = gaussian_kl(cov, torch.diag(cov.diagonal()))
    assert 0 < kl_fang < kl_centering and kl_fang < kl_diagonal
    # and every other choice of regression weights in the same graph does worse
    for seed in range(3):
        noise = 0.05 * torch.randn(N_V, N_H, generator=torch.Generator().manual_seed(seed))
        other = GraphicalFisher(
            fisher.l_u, fisher.d_u, fisher.alpha + noise, fisher.beta, fisher.d_m
        )
        assert gaussian_kl(cov, other.covariance()) > kl_fang


def test_centering_precondition_is_the_centered_gradient_mapped_back():
    # d = J J^T g, with J the Jacobian of (W, a_c, b_c) -> (W, a_c - W lam, b_c - W^T mu).
    gen = torch.Generator().manual_seed(0)
    mu, lam = torch.rand(N_V, generator=gen), torch.rand(N_H, generator=gen)

    def to_standard(x):
        W = x[N_U:].reshape(N_V, N_H)
        return torch.cat([x[:N_V] - W @ lam, x[N_V:N_U] - W.T @ mu, x[N_U:]])

    jac = torch.autograd.functional.jacobian(to_standard, torch.zeros(N_U + N_V * N_H))
    g = _random_direction(1)
    expected = jac @ jac.T @ flatten_parameters(*g)
    got = GraphicalFisher.centering(mu, lam).precondition(*g)
    torch.testing.assert_close(flatten_parameters(*got), expected)


def test_hidden_moments_rao_blackwellize_the_hidden_units():
    rbm = random_rbm(N_V, N_H, seed=5)
    v = torch.bernoulli(torch.full((2, N_V), 0.5), generator=torch.Generator().manual_seed(0))
    h = all_binary_states(N_H)
    sum_u = torch.zeros(N_U)
    sum_uu = torch.zeros(N_U, N_U)
    for row in v:  # E over h ~ p(h | v) by enumeration
        p = rbm.hidden_prob(row[None])[0]
        w = (h * p + (1 - h) * (1 - p)).prod(1)
        u = torch.cat([row.expand(len(h), -1), h], 1)
        sum_u += w @ u
        sum_uu += (u * w[:, None]).T @ u
    got_u, got_uu = hidden_moments(v, rbm.hidden_prob(v))
    torch.testing.assert_close(got_u, sum_u)
    torch.testing.assert_close(got_uu, sum_uu)


def test_fit_errors_name_the_problem():
    with pytest.raises(ValueError, match="damping must be >= 0, got -1"):
        GraphicalFisher.fit(torch.zeros(3), torch.eye(3), 2, damping=-1)
    with pytest.raises(ValueError, match="n_visible=3"):
        GraphicalFisher.fit(torch.zeros(3), torch.eye(3), 3)
    with pytest.raises(torch.linalg.LinAlgError, match="increase damping"):
        GraphicalFisher.fit(torch.zeros(3), torch.zeros(3, 3), 2)


def test_fitted_variances_are_the_residual_variances():
    rbm = random_rbm(N_V, N_H, seed=6)
    mean, cov = exact_statistics(rbm)
    mean_u = mean[:N_U]
    second_u = cov[:N_U, :N_U] + torch.outer(mean_u, mean_u)
    centering = GraphicalFisher.centering(mean[:N_V], mean[N_V:N_U])
    fitted = centering.with_fitted_variances(mean_u, second_u)
    op = centering.residual_operator()
    torch.testing.assert_close(fitted.variances(), (op @ cov @ op.T).diagonal())
    # for FANG's own (maximum-likelihood) weights, refitting the variances changes nothing
    fang = GraphicalFisher.fit(mean_u, second_u, N_V)
    torch.testing.assert_close(
        fang.with_fitted_variances(mean_u, second_u).variances(), fang.variances()
    )
