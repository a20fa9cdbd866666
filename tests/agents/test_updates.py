"""agents.updates: the separate-critic recipe's Fisher pass on a statistics subset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import agents.updates as updates
from agents.config import load_config
from agents.policies import make_policy
from agents.storage import RolloutBatch

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OBS_DIM, ACT_DIM, BATCH, SUBSET = 5, 2, 96, 16

pytestmark = pytest.mark.usefixtures("one_thread")


def mujoco_setup(*overrides: str):
    import gymnasium as gym
    import numpy as np

    cfg = load_config(CONFIGS / "mujoco.yaml", ["run.device=cpu", "algo.critic_updates=1",
                                                 *overrides])
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
    torch.manual_seed(0)
    policy = make_policy(obs_space, act_space, cfg.policy)
    opts = updates.make_optimizers(policy, cfg)
    g = torch.Generator().manual_seed(1)
    batch = RolloutBatch(
        obs=torch.randn(BATCH, OBS_DIM, generator=g),
        actions=torch.randn(BATCH, ACT_DIM, generator=g),
        log_probs=torch.zeros(BATCH),
        values=torch.zeros(BATCH),
        advantages=torch.randn(BATCH, generator=g),
        returns=torch.randn(BATCH, generator=g),
    )
    return cfg, policy, opts, batch


def augmented_second_moment(x: torch.Tensor) -> torch.Tensor:
    """``E[[x 1]^T [x 1]]`` in float64: the A factor of a first linear layer."""
    rows = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    return rows.T @ rows / len(x)


def test_fisher_rows_is_none_unless_the_batch_is_well_above_stats_batch_size():
    cfg, policy, opts, _ = mujoco_setup(f"critic_kfac.stats_batch_size={SUBSET}")
    assert updates.fisher_rows(SUBSET, opts.critic, torch.device("cpu")) is None
    # Up to 1.5 m rows the extra forward would cost more than it saves.
    assert updates.fisher_rows(SUBSET * 3 // 2 - 1, opts.critic, torch.device("cpu")) is None
    rows = updates.fisher_rows(BATCH, opts.critic, torch.device("cpu"))
    assert rows is not None and len(rows) == SUBSET
    assert len(set(rows.tolist())) == SUBSET and 0 <= int(rows.min()) <= int(rows.max()) < BATCH
    _, _, no_subset, _ = mujoco_setup("critic_kfac.stats_batch_size=null")
    assert updates.fisher_rows(BATCH, no_subset.critic, torch.device("cpu")) is None


def test_separate_update_estimates_the_factors_from_the_subset_it_draws(monkeypatch):
    cfg, policy, opts, batch = mujoco_setup(f"kfac.stats_batch_size={SUBSET}",
                                            f"critic_kfac.stats_batch_size={SUBSET}")
    drawn = []
    real = updates.fisher_rows

    def recording(*args):
        rows = real(*args)
        drawn.append(rows)
        return rows

    monkeypatch.setattr(updates, "fisher_rows", recording)
    updates.update(policy, opts, batch, cfg)
    actor_rows, critic_rows = drawn
    assert actor_rows is not None and critic_rows is not None
    for opt, rows in ((opts.main, actor_rows), (opts.critic, critic_rows)):
        first = next(iter(opt.preconditioner.blocks.values()))
        # The first update initialises the EMA: A is exactly the subset's second moment.
        torch.testing.assert_close(first.A.double(), augmented_second_moment(batch.obs[rows]),
                                   rtol=1e-5, atol=1e-6)


def test_the_gradient_is_the_whole_batchs_and_untouched_by_the_fisher_pass():
    import copy

    cfg, policy, opts, batch = mujoco_setup(f"critic_kfac.stats_batch_size={SUBSET}")
    before = copy.deepcopy(policy.critic)
    seen: list[torch.Tensor] = []
    real_step = opts.critic.step

    def step(*args, **kwargs):  # the gradient K-FAC is about to precondition
        seen.extend(p.grad.clone() for p in policy.critic.parameters())
        return real_step(*args, **kwargs)

    opts.critic.step = step
    updates.update(policy, opts, batch, cfg)
    loss = 0.5 * (batch.returns - before(batch.obs).squeeze(-1)).pow(2).mean()
    expected = torch.autograd.grad(loss, list(before.parameters()))
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_explained_variance():
    target = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert updates.explained_variance(target, target) == 1.0
    assert updates.explained_variance(torch.full((4,), 3.0), target) == 0.0  # the mean
    half = updates.explained_variance(target / 2, target)  # residual var = var / 4
    assert half == pytest.approx(0.75)
    assert torch.isnan(updates.explained_variance(target, torch.ones(4)))
