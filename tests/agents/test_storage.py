from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.returns import compute_gae
from agents.storage import RolloutStorage

PIXELS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
VECTOR = gym.spaces.Box(-np.inf, np.inf, (5,), np.float64)
BOX_ACTIONS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _fill(storage: RolloutStorage, rng: np.random.Generator) -> None:
    n = storage.num_envs
    obs_shape = storage.obs.shape[2:]
    for t in range(storage.num_steps):
        obs = rng.integers(0, 256, (n, *obs_shape)).astype(np.uint8)
        storage.insert(
            obs=obs,
            actions=rng.integers(0, 6, n),
            log_probs=torch.randn(n),
            values=torch.randn(n),
            rewards=rng.normal(size=n),  # float64 numpy: converted to float32
            terminated=np.array([t == 1] + [False] * (n - 1)),
            truncated=np.array([False] * (n - 1) + [t == 2]),
            final_values=torch.full((n,), 0.5),
        )


def test_pixel_storage_keeps_uint8_and_shapes() -> None:
    storage = RolloutStorage.from_spaces(5, 3, PIXELS, gym.spaces.Discrete(6))
    assert storage.obs.shape == (5, 3, 4, 84, 84) and storage.obs.dtype == torch.uint8
    assert storage.actions.shape == (5, 3) and storage.actions.dtype == torch.int64
    for name in ("log_probs", "values", "rewards", "final_values", "advantages", "returns"):
        tensor = getattr(storage, name)
        assert tensor.shape == (5, 3) and tensor.dtype == torch.float32, name
    assert storage.terminated.dtype == torch.bool and storage.truncated.dtype == torch.bool


def test_vector_storage_dtypes() -> None:
    storage = RolloutStorage.from_spaces(4, 2, VECTOR, BOX_ACTIONS, device="cpu")
    assert storage.obs.shape == (4, 2, 5) and storage.obs.dtype == torch.float32
    assert storage.actions.shape == (4, 2, 2) and storage.actions.dtype == torch.float32


def test_insert_fill_and_flatten() -> None:
    storage = RolloutStorage.from_spaces(4, 3, PIXELS, gym.spaces.Discrete(6))
    rng = np.random.default_rng(0)
    assert not storage.full
    with pytest.raises(RuntimeError, match="incomplete"):
        storage.flatten()
    _fill(storage, rng)
    assert storage.full
    assert storage.terminated[1, 0] and storage.truncated[2, 2]
    assert storage.terminated.sum() == 1 and storage.truncated.sum() == 1
    with pytest.raises(RuntimeError, match="full"):
        storage.insert(*(storage_row(storage, 0)))

    storage.compute_returns(torch.zeros(3), gamma=0.99, gae_lambda=0.95)
    batch = storage.flatten()
    assert len(batch) == 12
    assert batch.obs.shape == (12, 4, 84, 84) and batch.obs.dtype == torch.uint8
    assert batch.actions.shape == (12,)
    # Views, time-major: row t * N + n is step t of env n.
    assert batch.obs.data_ptr() == storage.obs.data_ptr()
    assert torch.equal(batch.obs[1 * 3 + 2], storage.obs[1, 2])
    torch.testing.assert_close(batch.returns, (storage.advantages + storage.values).reshape(-1))

    storage.reset()
    assert storage.step == 0 and not storage.full


def storage_row(storage: RolloutStorage, t: int) -> tuple[torch.Tensor, ...]:
    return (
        storage.obs[t],
        storage.actions[t],
        storage.log_probs[t],
        storage.values[t],
        storage.rewards[t],
        storage.terminated[t],
        storage.truncated[t],
    )


def test_compute_returns_uses_gae_convention() -> None:
    storage = RolloutStorage(3, 2, (1,), device="cpu")
    for t in range(3):
        storage.insert(
            obs=torch.zeros(2, 1),
            actions=torch.zeros(2, dtype=torch.int64),
            log_probs=torch.zeros(2),
            values=torch.tensor([1.0, 2.0]),
            rewards=torch.tensor([1.0, 1.0]),
            terminated=torch.tensor([t == 0, False]),
            truncated=torch.tensor([False, t == 1]),
            final_values=torch.tensor([0.0, 5.0 if t == 1 else 0.0]),
        )
    last_value = torch.tensor([3.0, 4.0])
    storage.compute_returns(last_value, gamma=0.9, gae_lambda=0.8)
    adv, ret = compute_gae(
        storage.rewards,
        storage.values,
        storage.terminated,
        storage.truncated,
        last_value,
        storage.final_values,
        0.9,
        0.8,
    )
    torch.testing.assert_close(storage.advantages, adv)
    torch.testing.assert_close(storage.returns, ret)
    # env 1 truncated after t = 1: its return there is r + gamma * V(final obs).
    assert storage.returns[1, 1].item() == pytest.approx(1.0 + 0.9 * 5.0)
    # env 0 terminated after t = 0: no bootstrap.
    assert storage.returns[0, 0].item() == pytest.approx(1.0)


def test_insert_leaves_fields_given_as_none_as_they_are() -> None:
    storage = RolloutStorage(2, 3, (1,))
    storage.values.fill_(7.0)
    storage.log_probs.fill_(-1.0)
    storage.insert(torch.ones(3, 1), torch.zeros(3), None, None, torch.ones(3),
                   torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool))
    assert storage.step == 1
    assert torch.equal(storage.values[0], torch.full((3,), 7.0))
    assert torch.equal(storage.log_probs[0], torch.full((3,), -1.0))
    assert torch.equal(storage.rewards[0], torch.ones(3))
