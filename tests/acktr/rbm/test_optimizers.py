"""SGD, centering and FANG on the same PCD gradient: steps, schedules, errors, a learning run."""

from __future__ import annotations

import copy

import pytest
import torch

from acktr.rbm import (
    FANG,
    RBM,
    SGD,
    Centered,
    GraphicalFisher,
    PersistentChains,
    Statistics,
    data_log_odds,
    exact_log_likelihood,
    likelihood_gradient,
)
from acktr.rbm.fisher import hidden_moments
from tests.acktr.rbm.helpers import random_rbm

pytestmark = pytest.mark.usefixtures("float64")


def _stats(rbm, seed=0, n=6):
    gen = torch.Generator().manual_seed(seed)
    data = torch.bernoulli(torch.full((n, rbm.n_visible), 0.4), generator=gen)
    model = torch.bernoulli(torch.full((n, rbm.n_visible), 0.6), generator=gen)
    return Statistics(data, rbm.hidden_prob(data), model, rbm.hidden_prob(model))


def test_sgd_step_with_momentum():
    rbm = random_rbm(4, 3)
    start = copy.deepcopy(rbm)
    opt = SGD(rbm, lr=0.1, momentum=0.5)
    s1, s2 = _stats(rbm, 1), _stats(rbm, 2)
    g1 = s1.gradient()
    opt.step(s1)
    g2 = s2.gradient()
    opt.step(s2)
    expected = start.W + 0.1 * g1[0] + 0.1 * (0.5 * g1[0] + g2[0])
    torch.testing.assert_close(rbm.W, expected)


def test_learning_rate_may_be_a_schedule():
    rbm = random_rbm(4, 3)
    start = rbm.a.clone()
    opt = SGD(rbm, lr=lambda step: 0.1 * (step + 1))
    stats = [_stats(rbm, k) for k in range(2)]
    grads = [s.gradient()[1] for s in stats]
    for s in stats:
        opt.step(s)
    torch.testing.assert_close(rbm.a, start + 0.1 * grads[0] + 0.2 * grads[1])


def test_centered_direction_uses_moving_average_offsets():
    rbm = random_rbm(4, 3)
    opt = Centered(rbm, lr=0.1, offsets="data", offset_decay=0.9)
    s1, s2 = _stats(rbm, 1), _stats(rbm, 2)
    opt.step(s1)
    torch.testing.assert_close(opt.offset_v, s1.data_v.mean(0))
    d = opt.step(s2)
    mu = 0.9 * s1.data_v.mean(0) + 0.1 * s2.data_v.mean(0)
    lam = 0.9 * s1.data_h.mean(0) + 0.1 * s2.data_h.mean(0)
    expected = GraphicalFisher.centering(mu, lam).precondition(*s2.gradient())
    for got, want in zip(d, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_centered_model_offsets_follow_the_chains():
    rbm = random_rbm(4, 3)
    opt = Centered(rbm, offsets="model")
    s = _stats(rbm)
    opt.step(s)
    torch.testing.assert_close(opt.offset_h, s.model_h.mean(0))


def test_fang_refits_on_schedule_from_the_accumulated_samples():
    rbm = random_rbm(4, 3)
    opt = FANG(rbm, lr=1e-3, damping=0.1, refit_every=4, stats_every=2)
    stats = []
    for k in range(5):
        stats.append(_stats(rbm, k))
        d = opt.step(stats[-1])
        if k == 0:  # first iteration: fit from its own samples
            s_u, s_uu = hidden_moments(stats[0].model_v, stats[0].model_h)
            fit = GraphicalFisher.fit(s_u / 6, s_uu / 6, 4, 0.1)
            torch.testing.assert_close(opt.fisher.alpha, fit.alpha)
            for got, want in zip(d, fit.precondition(*stats[0].gradient()), strict=True):
                torch.testing.assert_close(got, want)
    # refit at iteration 4 from the samples of iterations 2 and 4
    s_u = sum(hidden_moments(stats[k].model_v, stats[k].model_h)[0] for k in (2, 4))
    s_uu = sum(hidden_moments(stats[k].model_v, stats[k].model_h)[1] for k in (2, 4))
    fit = GraphicalFisher.fit(s_u / 12, s_uu / 12, 4, 0.1)
    torch.testing.assert_close(opt.fisher.b_uu, fit.b_uu)
    torch.testing.assert_close(opt.fisher.d_m, fit.d_m)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda r: SGD(r, lr=0.0),
            "lr must be a positive float or a callable of the step, got 0.0",
        ),
        (lambda r: SGD(r, lr="1"), "lr must be a positive float"),
        (lambda r: SGD(r, momentum=1.0), r"momentum must be a number in \[0, 1\), got 1.0"),
        (lambda r: Centered(r, offsets="mean"), "offsets must be 'model', 'data' or 'average'"),
        (lambda r: Centered(r, offset_decay=-0.1), "offset_decay must be a number in"),
        (lambda r: FANG(r, damping=0.0), "damping must be a positive number, got 0.0"),
        (lambda r: FANG(r, refit_every=0), "refit_every must be an integer >= 1, got 0"),
        (lambda r: FANG(r, stats_every=1.5), "stats_every must be an integer >= 1, got 1.5"),
    ],
)
def test_invalid_hyperparameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make(random_rbm(3, 2))


def _train(opt_cls, lr, iters, seed=0, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    proto = torch.bernoulli(torch.full((3, 12), 0.5), generator=gen)
    data = (proto.repeat(40, 1) + (torch.rand(120, 12, generator=gen) < 0.05)) % 2
    rbm = RBM(12, 4, generator=gen).double()
    rbm.a.copy_(data_log_odds(data))
    start = exact_log_likelihood(rbm, data)
    chains = PersistentChains(12, n_chains=50, generator=gen)
    opt = opt_cls(rbm, lr=lr, **kwargs)
    for _ in range(iters):
        batch = data[torch.randint(0, len(data), (20,), generator=gen)]
        opt.step(likelihood_gradient(rbm, batch, chains))
    return start, exact_log_likelihood(rbm, data)


@pytest.mark.parametrize(
    "opt_cls, lr", [(SGD, 0.1), (Centered, 0.1), (FANG, 0.03)], ids=["sgd", "centered", "fang"]
)
def test_each_optimizer_raises_the_exact_log_likelihood(opt_cls, lr):
    start, end = _train(opt_cls, lr, 300)
    assert end > start + 1.5, (start, end)


@pytest.mark.medium
def test_fang_beats_sgd_and_centering_per_iteration_on_a_small_problem():
    # Each optimizer at its best learning rate of a small grid, mean over three seeds: the
    # paper's claim on a 12 x 4 RBM with exact log-likelihoods (about 3 s).
    grids = {SGD: (0.1, 0.3), Centered: (0.1, 0.3), FANG: (0.01, 0.03, 0.1)}
    best = {
        cls: max(sum(_train(cls, lr, 300, seed=s)[1] for s in range(3)) / 3 for lr in lrs)
        for cls, lrs in grids.items()
    }
    assert best[FANG] > best[SGD] + 0.3 and best[FANG] > best[Centered] + 0.3, best
