"""AIS estimates of log Z against exact enumeration."""

from __future__ import annotations

import math

import pytest
import torch

from acktr.rbm import RBM, ais_log_partition, exact_log_partition, log_likelihood_interval
from tests.acktr.rbm.helpers import random_rbm

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize(
    "n_visible, n_hidden, scale, seed",
    [(10, 8, 1.0, 0), (12, 6, 2.0, 1), (20, 10, 0.5, 2), (8, 14, 1.0, 3)],
)
@pytest.mark.parametrize("with_data", [False, True])
def test_estimate_lies_within_its_interval_of_the_exact_value(
    n_visible, n_hidden, scale, seed, with_data
):
    rbm = random_rbm(n_visible, n_hidden, scale, seed)
    gen = torch.Generator().manual_seed(seed)
    data = (
        torch.bernoulli(torch.sigmoid(rbm.a).expand(300, -1), generator=gen) if with_data else None
    )
    result = ais_log_partition(rbm, n_chains=100, n_betas=500, data=data, generator=gen)
    exact = exact_log_partition(rbm)
    assert result.lower <= exact <= result.upper, (result.interval, exact)
    assert result.lower < result.log_z < result.upper
    assert result.upper - result.lower < 0.5


def test_model_without_weights_is_exact_with_data_base():
    # Base = target when W = 0, b = 0 and a equals the data's log-odds: every weight is 1.
    data = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    rbm = RBM(3, 5, weight_std=0.0).double()
    from acktr.rbm import data_log_odds

    rbm.a.copy_(data_log_odds(data))
    result = ais_log_partition(rbm, n_chains=10, n_betas=5, data=data)
    assert result.log_z == pytest.approx(exact_log_partition(rbm), abs=1e-10)
    assert result.lower == pytest.approx(result.upper, abs=1e-10)
    assert result.log_z_base == pytest.approx(
        float(torch.nn.functional.softplus(rbm.a).sum()) + 5 * math.log(2)
    )


def test_seeded_runs_repeat():
    rbm = random_rbm(6, 4)
    one = ais_log_partition(rbm, 20, 50, generator=torch.Generator().manual_seed(7))
    two = ais_log_partition(rbm, 20, 50, generator=torch.Generator().manual_seed(7))
    assert one.log_z == two.log_z and one.interval == two.interval


def test_log_likelihood_interval_swaps_the_ends():
    rbm = random_rbm(6, 4)
    data = torch.bernoulli(torch.full((10, 6), 0.5), generator=torch.Generator().manual_seed(0))
    result = ais_log_partition(rbm, 50, 200, generator=torch.Generator().manual_seed(0))
    ll, lower, upper = log_likelihood_interval(rbm, data, result)
    assert lower <= ll <= upper
    assert ll == pytest.approx(float(-rbm.free_energy(data).mean()) - result.log_z)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_chains": 0}, "n_chains must be an integer >= 1, got 0"),
        ({"n_betas": 1}, "n_betas must be an integer >= 2, got 1"),
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\), got 1.0"),
        ({"data": torch.ones(3, 5)}, r"data must have shape \(n, 4\)"),
        ({"data": torch.full((3, 4), 0.5)}, "binary"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ais_log_partition(random_rbm(4, 2), **kwargs)
