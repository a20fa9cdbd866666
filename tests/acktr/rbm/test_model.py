"""The RBM itself: energies, conditionals, sampling, devices and input errors."""

from __future__ import annotations

import pytest
import torch

from acktr.rbm import RBM, data_log_odds, flatten_parameters, unflatten_parameters
from acktr.rbm.exact import all_binary_states
from tests.acktr.rbm.helpers import random_rbm

pytestmark = pytest.mark.usefixtures("float64")


def test_parameter_shapes_and_energy_formula():
    rbm = random_rbm(5, 3)
    assert rbm.W.shape == (5, 3) and rbm.a.shape == (5,) and rbm.b.shape == (3,)
    v, h = torch.bernoulli(torch.full((4, 5), 0.5)), torch.bernoulli(torch.full((4, 3), 0.5))
    expected = torch.stack([-(v[k] @ rbm.W @ h[k]) - rbm.a @ v[k] - rbm.b @ h[k] for k in range(4)])
    torch.testing.assert_close(rbm.energy(v, h), expected)


def test_free_energy_sums_out_the_hidden_layer():
    rbm = random_rbm(4, 5)
    v = all_binary_states(4)
    h = all_binary_states(5)
    energies = torch.stack([rbm.energy(vi.expand(len(h), -1), h) for vi in v])
    torch.testing.assert_close(rbm.free_energy(v), -torch.logsumexp(-energies, 1))


def test_conditionals_are_ratios_of_joint_probabilities():
    rbm = random_rbm(3, 2)
    v = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    h1, h0 = torch.tensor([[1.0, 0.0]]).double(), torch.tensor([[0.0, 0.0]]).double()
    # p(h_0 = 1 | v) / p(h_0 = 0 | v) with h_1 = 0 fixed, by independence of hidden units
    odds = torch.exp(rbm.energy(v, h0) - rbm.energy(v, h1))
    p = rbm.hidden_prob(v)[0, 0]
    torch.testing.assert_close(p / (1 - p), odds[0])


def test_samples_are_binary_with_the_right_frequencies():
    rbm = random_rbm(6, 4)
    gen = torch.Generator().manual_seed(0)
    v = torch.ones(20000, 6, dtype=torch.float64)
    h = rbm.sample_h(v, generator=gen)
    assert h.shape == (20000, 4) and set(h.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(h.mean(0), rbm.hidden_prob(v[:1])[0], atol=0.02, rtol=0)
    vs = rbm.sample_v(h, generator=gen)
    assert vs.shape == (20000, 6) and vs.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_the_parameters(dtype):
    rbm = RBM(7, 3).to(dtype)
    v = torch.bernoulli(torch.full((2, 7), 0.5)).to(dtype)
    assert rbm.free_energy(v).dtype == dtype and rbm.sample_h(v).dtype == dtype


def test_flatten_round_trip_and_order():
    rbm = random_rbm(3, 2)
    x = flatten_parameters(rbm.W, rbm.a, rbm.b)
    assert x[3 + 2 + 1 * 2 + 1] == rbm.W[1, 1]  # row-major vec(W) after (a, b)
    for got, want in zip(unflatten_parameters(x, 3, 2), (rbm.W, rbm.a, rbm.b), strict=True):
        torch.testing.assert_close(got, want)


def test_data_log_odds():
    data = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    odds = data_log_odds(data, eps=0.01)
    torch.testing.assert_close(odds[0], torch.log(torch.tensor(3.0)))
    torch.testing.assert_close(odds[1], torch.log(torch.tensor(0.01 / 0.99)))


def test_non_binary_data_is_rejected_with_the_bad_value():
    rbm = RBM(4, 2)
    with pytest.raises(ValueError, match=r"binary.*v\[1, 2\] = 0\.5"):
        rbm.free_energy(torch.tensor([[0.0, 1, 0, 1], [1, 1, 0.5, 0]]))


@pytest.mark.parametrize("shape", [(3, 5), (4,), (2, 3, 4)])
def test_shape_mismatch_is_rejected(shape):
    rbm = RBM(4, 2)
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        rbm.free_energy(torch.zeros(shape))


def test_hidden_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match=r"h must have shape \(batch, 2\)"):
        RBM(4, 2).sample_v(torch.zeros(3, 4))


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_invalid_sizes(n):
    with pytest.raises(ValueError, match="n_hidden must be an integer >= 1"):
        RBM(3, n)
