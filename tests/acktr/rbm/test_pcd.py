"""The PCD gradient: exact positive phase, chains that sample the model."""

from __future__ import annotations

import pytest
import torch

from acktr.rbm import (
    PersistentChains,
    Statistics,
    exact_statistics,
    flatten_parameters,
    likelihood_gradient,
    unflatten_parameters,
)
from tests.acktr.rbm.helpers import brute_log_z_of, random_rbm

pytestmark = pytest.mark.usefixtures("float64")


def test_gradient_with_exact_model_moments_is_the_log_likelihood_gradient():
    rbm = random_rbm(4, 3, seed=0)
    data = torch.bernoulli(torch.full((7, 4), 0.4), generator=torch.Generator().manual_seed(1))

    def mean_log_likelihood(x):
        W, a, b = unflatten_parameters(x, 4, 3)
        neg_free = data @ a + torch.nn.functional.softplus(data @ W + b).sum(1)
        return neg_free.mean() - brute_log_z_of(W, a, b)

    x = flatten_parameters(rbm.W, rbm.a, rbm.b).clone()
    expected = torch.autograd.functional.jacobian(mean_log_likelihood, x)
    # Statistics' positive phase (a one-row all-zero "model" sample contributes (0, 0, p(h|0)))
    zero = torch.zeros(1, 4)
    stats = Statistics(data, rbm.hidden_prob(data), zero, rbm.hidden_prob(zero))
    positive = flatten_parameters(*stats.gradient()) + torch.cat(
        [torch.zeros(4), torch.sigmoid(rbm.b), torch.zeros(12)]
    )
    # and the exact negative phase E[g]: together the exact gradient
    torch.testing.assert_close(positive - exact_statistics(rbm)[0], expected)


def test_chains_sample_the_model_distribution():
    rbm = random_rbm(6, 4, scale=0.7, seed=2)
    chains = PersistentChains(
        6, n_chains=4000, gibbs_steps=5, generator=torch.Generator().manual_seed(0)
    )
    for _ in range(6):
        v, p_h = chains.advance(rbm)
    mean = exact_statistics(rbm)[0]
    torch.testing.assert_close(v.mean(0), mean[:6], atol=0.03, rtol=0)
    torch.testing.assert_close(p_h.mean(0), mean[6:10], atol=0.03, rtol=0)


def test_likelihood_gradient_shapes_and_chain_persistence():
    rbm = random_rbm(5, 3)
    init = torch.zeros(8, 5)
    chains = PersistentChains(5, n_chains=8, init=init, generator=torch.Generator().manual_seed(0))
    stats = likelihood_gradient(rbm, torch.ones(4, 5), chains)
    assert stats.model_v.shape == (8, 5) and stats.data_h.shape == (4, 3)
    assert torch.equal(chains.v, stats.model_v)  # the chains continue from where they are
    assert [t.shape for t in stats.gradient()] == [(5, 3), (5,), (3,)]


def test_errors():
    rbm = random_rbm(5, 3)
    chains = PersistentChains(5, n_chains=2)
    with pytest.raises(ValueError, match="binary"):
        likelihood_gradient(rbm, torch.full((2, 5), 0.5), chains)
    with pytest.raises(ValueError, match=r"shape \(batch, 5\)"):
        likelihood_gradient(rbm, torch.ones(2, 6), chains)
    with pytest.raises(ValueError, match="gibbs_steps must be an integer >= 1, got 0"):
        PersistentChains(5, gibbs_steps=0)
    with pytest.raises(ValueError, match="n_chains=3 rows, got 2"):
        PersistentChains(5, n_chains=3, init=torch.ones(2, 5))
    with pytest.raises(ValueError, match="chains have 5 visible units but the RBM has 4"):
        chains.advance(random_rbm(4, 3))
