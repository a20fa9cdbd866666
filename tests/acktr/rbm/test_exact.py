"""Exact log Z and Fisher by enumeration, checked against brute force over both layers."""

from __future__ import annotations

import math

import pytest
import torch

from acktr.rbm import (
    RBM,
    exact_fisher,
    exact_log_likelihood,
    exact_log_partition,
    exact_statistics,
    gaussian_kl,
)
from tests.acktr.rbm.helpers import brute_log_z, brute_log_z_of, brute_statistics, random_rbm

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("n_visible, n_hidden", [(6, 4), (4, 6), (5, 5), (1, 3)])
def test_log_partition_matches_enumeration_over_both_layers(n_visible, n_hidden):
    rbm = random_rbm(n_visible, n_hidden, scale=1.5, seed=n_visible)
    assert exact_log_partition(rbm) == pytest.approx(float(brute_log_z(rbm)), abs=1e-10)


def test_log_partition_in_float32_model_is_computed_in_float64():
    rbm = random_rbm(6, 4).float()
    assert exact_log_partition(rbm) == pytest.approx(float(brute_log_z(rbm.double())), abs=1e-5)


def test_log_partition_refuses_two_large_layers():
    with pytest.raises(ValueError, match="n_visible=30, n_hidden=25.*ais_log_partition"):
        exact_log_partition(RBM(30, 25))


def test_log_partition_of_a_model_without_weights_enumerates_the_smaller_layer():
    rbm = RBM(30, 3, weight_std=0.0)
    rbm.a.fill_(0.3)
    expected = 30 * math.log1p(math.exp(0.3)) + 3 * math.log(2)
    assert exact_log_partition(rbm) == pytest.approx(expected, rel=1e-6)


def test_exact_log_likelihood_normalizes():
    rbm = random_rbm(5, 3)
    from acktr.rbm.exact import all_binary_states

    v = all_binary_states(5)
    probs = torch.exp(-rbm.free_energy(v) - exact_log_partition(rbm))
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    assert exact_log_likelihood(rbm, v[:3]) == pytest.approx(float(probs[:3].log().mean()))


@pytest.mark.parametrize("n_visible, n_hidden", [(4, 3), (3, 5)])
def test_fisher_matches_the_covariance_over_both_layers(n_visible, n_hidden):
    rbm = random_rbm(n_visible, n_hidden, scale=1.0, seed=3)
    mean, cov = exact_statistics(rbm)
    mean_bf, cov_bf = brute_statistics(rbm)
    torch.testing.assert_close(mean, mean_bf, atol=1e-12, rtol=0)
    torch.testing.assert_close(cov, cov_bf, atol=1e-12, rtol=0)
    torch.testing.assert_close(exact_fisher(rbm), cov_bf, atol=1e-12, rtol=0)


def test_fisher_is_the_hessian_of_log_z():
    # G = Cov(g) = d^2 log Z / d eta^2 for an exponential family.
    rbm = random_rbm(3, 2, seed=5)
    from acktr.rbm import flatten_parameters, unflatten_parameters

    def log_z(x):
        return brute_log_z_of(*unflatten_parameters(x, 3, 2))

    x = flatten_parameters(rbm.W, rbm.a, rbm.b).clone()
    hess = torch.autograd.functional.hessian(log_z, x)
    torch.testing.assert_close(exact_fisher(rbm), hess, atol=1e-10, rtol=0)


def test_fisher_limits_are_named():
    with pytest.raises(ValueError, match="n_hidden <= 20.*n_hidden=21"):
        exact_statistics(RBM(2, 21))


def test_gaussian_kl_closed_forms():
    a = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, -0.2], [-0.2, 0.5]], dtype=torch.float64)
    assert gaussian_kl(a, a) == pytest.approx(0.0, abs=1e-12)
    one_d = 0.5 * (2.0 / 3.0 - 1 + math.log(3.0 / 2.0))
    assert gaussian_kl(torch.tensor([[2.0]]), torch.tensor([[3.0]])) == pytest.approx(one_d)
    # KL(N(0, A^-1) || N(0, B^-1)) = KL(N(0, B) || N(0, A))
    assert gaussian_kl(a.inverse(), b.inverse()) == pytest.approx(gaussian_kl(b, a), rel=1e-10)
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl(a, torch.eye(3))
