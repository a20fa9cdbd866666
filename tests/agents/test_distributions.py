from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import distributions as td

from agents.distributions import Categorical, DiagGaussian, make_distribution


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_categorical_matches_torch() -> None:
    logits = torch.randn(6, 4, dtype=torch.float64)
    actions = torch.tensor([0, 1, 2, 3, 1, 0])
    ours, ref = Categorical(logits), td.Categorical(logits=logits)
    torch.testing.assert_close(ours.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.probs, ref.probs)
    assert torch.equal(ours.mode(), logits.argmax(-1))


def test_categorical_kl_matches_torch() -> None:
    p, q = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    expected = td.kl_divergence(td.Categorical(logits=p), td.Categorical(logits=q))
    torch.testing.assert_close(Categorical(p).kl(Categorical(q)), expected)


def test_categorical_sample_frequencies() -> None:
    probs = torch.tensor([0.1, 0.6, 0.3])
    dist = Categorical(probs.log().expand(20000, 3))
    sample = dist.sample()
    assert sample.shape == (20000,) and sample.dtype == torch.int64
    freq = torch.bincount(sample, minlength=3).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def test_categorical_sample_any_batch_shape() -> None:
    dist = Categorical(torch.randn(3, 5, 4))
    assert dist.sample().shape == (3, 5)
    assert dist.log_prob(dist.sample()).shape == (3, 5)


def test_diag_gaussian_matches_torch() -> None:
    mean = torch.randn(7, 3, dtype=torch.float64)
    log_std = torch.randn(3, dtype=torch.float64)
    actions = torch.randn(7, 3, dtype=torch.float64)
    ours = DiagGaussian(mean, log_std)
    ref = td.Independent(td.Normal(mean, log_std.exp().expand_as(mean)), 1)
    torch.testing.assert_close(ours.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    assert ours.log_prob(actions).shape == (7,)
    assert torch.equal(ours.mode(), mean)


def test_diag_gaussian_closed_forms() -> None:
    # log N(a; mu, s^2) summed over d: -sum(log s) - d/2 log(2 pi) - sum((a - mu)^2 / (2 s^2)).
    mean = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    log_std = torch.tensor([0.0, np.log(2.0)], dtype=torch.float64)
    action = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    expected = -np.log(2.0) - np.log(2 * np.pi) - (1.0 / 2 + 4.0 / 8)
    torch.testing.assert_close(DiagGaussian(mean, log_std).log_prob(action).item(), expected)
    entropy = 2 * 0.5 * (1 + np.log(2 * np.pi)) + np.log(2.0)
    torch.testing.assert_close(DiagGaussian(mean, log_std).entropy().item(), entropy)


def test_diag_gaussian_kl_matches_torch() -> None:
    m1, m2 = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    s1, s2 = torch.randn(2, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    ref = td.kl_divergence(
        td.Independent(td.Normal(m1, s1.exp().expand_as(m1)), 1),
        td.Independent(td.Normal(m2, s2.exp().expand_as(m2)), 1),
    )
    torch.testing.assert_close(DiagGaussian(m1, s1).kl(DiagGaussian(m2, s2)), ref)
    torch.testing.assert_close(
        DiagGaussian(m1, s1).kl(DiagGaussian(m1, s1)), torch.zeros(4, dtype=torch.float64)
    )


def test_diag_gaussian_sample_statistics_and_no_clipping() -> None:
    mean = torch.full((50000, 2), 5.0)  # far outside a [-1, 1] Box: samples are not clipped
    log_std = torch.tensor([0.0, np.log(0.5)], dtype=torch.float32)
    sample = DiagGaussian(mean, log_std).sample()
    assert sample.shape == (50000, 2) and sample.dtype == torch.float32
    torch.testing.assert_close(sample.mean(0), torch.tensor([5.0, 5.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(sample.std(0), torch.tensor([1.0, 0.5]), atol=0.02, rtol=0)
    assert sample.max() > 1.0


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_fisher_sample_is_detached_but_log_prob_is_differentiable(kind: str) -> None:
    params = torch.randn(8, 3, requires_grad=True)
    log_std = torch.zeros(3, requires_grad=True)
    dist = Categorical(params) if kind == "categorical" else DiagGaussian(params, log_std)
    sampled = dist.fisher_sample()
    assert not sampled.requires_grad
    assert not dist.sample().requires_grad
    fisher_loss = -dist.log_prob(sampled).mean()
    fisher_loss.backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
    if kind == "gaussian":
        assert log_std.grad is not None


def test_make_distribution_discrete() -> None:
    spec = make_distribution(gym.spaces.Discrete(6))
    assert (spec.kind, spec.param_dim, spec.action_shape) == ("categorical", 6, ())
    assert spec.action_dtype == torch.int64 and not spec.needs_log_std
    assert isinstance(spec.build(torch.zeros(2, 6)), Categorical)


def test_make_distribution_box() -> None:
    spec = make_distribution(gym.spaces.Box(-1.0, 1.0, (3,), np.float32))
    assert (spec.kind, spec.param_dim, spec.action_shape) == ("diag_gaussian", 3, (3,))
    assert spec.action_dtype == torch.float32 and spec.needs_log_std
    assert isinstance(spec.build(torch.zeros(2, 3), torch.zeros(3)), DiagGaussian)
    with pytest.raises(ValueError, match="log_std"):
        spec.build(torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("space", "name"),
    [
        (gym.spaces.MultiDiscrete([2, 3]), "MultiDiscrete"),
        (gym.spaces.MultiBinary(4), "MultiBinary"),
        (gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), "Dict"),
        (gym.spaces.Tuple((gym.spaces.Discrete(2),)), "Tuple"),
        (gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32), "1-D"),
        (gym.spaces.Discrete(3, start=1), "start"),
    ],
)
def test_make_distribution_rejects_unsupported_spaces(space: gym.Space, name: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        make_distribution(space)
    if name not in ("start",):
        assert "Discrete" in str(info.value) and "Box" in str(info.value)
