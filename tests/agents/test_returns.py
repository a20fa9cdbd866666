"""GAE and n-step returns against numbers worked out by hand.

Trajectory (T = 5, N = 3), gamma = 0.9, lam = 0.8:

* env 0: truncated after t = 1 (bootstrap from final_values[1] = 10), terminated after t = 3,
  rollout ends mid-episode (bootstrap from last_value = 3).
* env 1: one episode throughout, bootstrapped from last_value = -1.
* env 2: terminated *and* truncated after t = 2: termination wins (no bootstrap).
"""

from __future__ import annotations

import pytest
import torch

from agents.returns import compute_gae, compute_nstep_returns, standardize

GAMMA, LAM = 0.9, 0.8
F = False
T = True

REWARDS = [[1.0, 0.0, 1.0], [2.0, 0.0, 1.0], [3.0, 0.0, 1.0], [4.0, 0.0, 1.0], [5.0, 1.0, 1.0]]
VALUES = [[0.5, 1.0, 2.0], [1.0, 1.0, 2.0], [1.5, 1.0, 2.0], [2.0, 1.0, 2.0], [2.5, 1.0, 2.0]]
TERMINATED = [[F, F, F], [F, F, F], [F, F, T], [T, F, F], [F, F, F]]
TRUNCATED = [[F, F, F], [T, F, F], [F, F, T], [F, F, F], [F, F, F]]
# Entries where not truncated are garbage on purpose: they must be ignored.
FINAL_VALUES = [[99.0] * 3, [10.0, 99.0, 99.0], [99.0] * 3, [99.0] * 3, [99.0] * 3]
LAST_VALUE = [3.0, -1.0, 4.0]


def _inputs(dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    return {
        "rewards": torch.tensor(REWARDS, dtype=dtype),
        "values": torch.tensor(VALUES, dtype=dtype),
        "terminated": torch.tensor(TERMINATED),
        "truncated": torch.tensor(TRUNCATED),
        "last_value": torch.tensor(LAST_VALUE, dtype=dtype),
        "final_values": torch.tensor(FINAL_VALUES, dtype=dtype),
    }


def _expected_gae() -> torch.Tensor:
    g, gl = GAMMA, GAMMA * LAM
    # env 0: TD errors with the bootstrap values 1.0 (V[1]), 10 (final), 2.0 (V[3]), 0, 3.0.
    d = [1 + g * 1.0 - 0.5, 2 + g * 10.0 - 1.0, 3 + g * 2.0 - 1.5, 4 + 0.0 - 2.0, 5 + g * 3.0 - 2.5]
    env0 = [d[0] + gl * d[1], d[1], d[2] + gl * d[3], d[3], d[4]]
    # env 1: no boundary; V = 1 everywhere, last value -1.
    e = [0 + g * 1 - 1, 0 + g * 1 - 1, 0 + g * 1 - 1, 0 + g * 1 - 1, 1 + g * -1 - 1]
    env1 = [sum(gl**k * e[t + k] for k in range(5 - t)) for t in range(5)]
    # env 2: boundary after t = 2 (terminal: bootstrap 0); V = 2, last value 4.
    c = [1 + g * 2 - 2, 1 + g * 2 - 2, 1 + 0.0 - 2, 1 + g * 2 - 2, 1 + g * 4 - 2]
    env2 = [c[0] + gl * c[1] + gl**2 * c[2], c[1] + gl * c[2], c[2], c[3] + gl * c[4], c[4]]
    return torch.tensor([env0, env1, env2], dtype=torch.float64).T


def _expected_nstep() -> torch.Tensor:
    g = GAMMA
    env0 = [1 + g * (2 + g * 10.0), 2 + g * 10.0, 3 + g * 4, 4.0, 5 + g * 3.0]
    env1 = [g**4 * 1 + g**5 * -1, g**3 * 1 + g**4 * -1, g**2 + g**3 * -1, g - g**2, 1 - g]
    env2 = [1 + g + g**2, 1 + g, 1.0, 1 + g * (1 + g * 4), 1 + g * 4]
    return torch.tensor([env0, env1, env2], dtype=torch.float64).T


def test_gae_hand_computed() -> None:
    inputs = _inputs()
    advantages, returns = compute_gae(**inputs, gamma=GAMMA, lam=LAM)
    expected = _expected_gae()
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + inputs["values"])
    # The worked example from the module's reasoning, spelled out for env 0.
    torch.testing.assert_close(advantages[:, 0], torch.tensor([8.6, 10.0, 4.74, 2.0, 5.2]).double())


def test_nstep_returns_hand_computed() -> None:
    inputs = _inputs()
    del inputs["values"]
    returns = compute_nstep_returns(**inputs, gamma=GAMMA)
    torch.testing.assert_close(returns, _expected_nstep())
    torch.testing.assert_close(returns[:, 0], torch.tensor([10.9, 11.0, 6.6, 4.0, 7.7]).double())


def test_gae_with_lambda_one_equals_nstep_returns() -> None:
    inputs = _inputs()
    advantages, returns = compute_gae(**inputs, gamma=GAMMA, lam=1.0)
    torch.testing.assert_close(returns, _expected_nstep())
    torch.testing.assert_close(advantages, _expected_nstep() - inputs["values"])


def test_gae_with_lambda_zero_is_td_error() -> None:
    inputs = _inputs()
    advantages, _ = compute_gae(**inputs, gamma=GAMMA, lam=0.0)
    g = GAMMA
    td0 = [1 + g * 1.0 - 0.5, 2 + g * 10.0 - 1.0, 3 + g * 2.0 - 1.5, 4 - 2.0, 5 + g * 3.0 - 2.5]
    torch.testing.assert_close(advantages[:, 0], torch.tensor(td0, dtype=torch.float64))


def test_truncation_differs_from_termination() -> None:
    inputs = _inputs()
    as_terminal = dict(inputs, terminated=inputs["terminated"] | inputs["truncated"])
    adv_trunc, _ = compute_gae(**inputs, gamma=GAMMA, lam=LAM)
    adv_term, _ = compute_gae(**as_terminal, gamma=GAMMA, lam=LAM)
    # Only the truncated step (env 0, t = 1) and the step feeding into it change.
    assert adv_trunc[1, 0] - adv_term[1, 0] == pytest.approx(GAMMA * 10.0)
    torch.testing.assert_close(adv_trunc[2:], adv_term[2:])


def test_float_flags_float32_and_no_grad() -> None:
    inputs = _inputs(torch.float32)
    inputs["terminated"] = inputs["terminated"].float()
    inputs["truncated"] = inputs["truncated"].float()
    inputs["values"].requires_grad_(True)
    advantages, returns = compute_gae(**inputs, gamma=GAMMA, lam=LAM)
    assert advantages.dtype == torch.float32 and advantages.shape == (5, 3)
    assert not advantages.requires_grad and not returns.requires_grad
    torch.testing.assert_close(advantages.double(), _expected_gae(), rtol=1e-5, atol=1e-5)


def test_standardize() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    y = standardize(x)
    assert y.mean().abs() < 1e-6 and (y.std() - 1).abs() < 1e-6
