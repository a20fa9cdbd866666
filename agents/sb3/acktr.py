"""``ACKTR`` as a stable-baselines3 on-policy algorithm, on our K-FAC core.

A thin adapter, as sb3-contrib's TRPO is: SB3 collects the rollout and computes GAE in its
rollout buffer; :meth:`ACKTR.train` hands the batch to the one ACKTR update of the project
(:func:`agents.updates.joint_step` or :func:`agents.updates.separate_step`, which our own
trainer calls too) and logs its metrics under SB3's keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance

import acktr
from agents import updates
from agents.config import KFACConfig, _critic_kfac_default
from agents.returns import standardize
from agents.sb3.policies import (
    ACKTRCnnPolicy,
    ACKTRMultiInputPolicy,
    ACKTRPolicy,
    actor_and_critic,
)
from agents.updates import UpdateSettings, make_kfac, metrics_to_floats

SelfACKTR = TypeVar("SelfACKTR", bound="ACKTR")
MIN_LR = 1e-8  # K-FAC's step size must be positive; schedules that reach 0 stop here

# K-FAC settings that are constructor arguments of their own; the others go in kfac_kwargs.
_TOP_LEVEL_KFAC = ("kl_clip", "damping", "momentum", "stat_decay", "inverse_every",
                   "cold_start_steps")
_KFAC_KWARGS = tuple(f.name for f in dataclasses.fields(KFACConfig) if f.name != "lr")
# Policy options ACKTR cannot honour: gSDE, and an optimizer other than K-FAC.
_UNSUPPORTED_POLICY_KWARGS = {
    "use_sde": "gSDE is not supported",
    "full_std": "a gSDE option; gSDE is not supported",
    "use_expln": "a gSDE option; gSDE is not supported",
    "squash_output": "a gSDE option; gSDE is not supported",
    "optimizer_class": "ACKTR's optimizer is K-FAC; set it with kfac_kwargs",
    "optimizer_kwargs": "ACKTR's optimizer is K-FAC; set it with kfac_kwargs",
}


def kfac_config(base: KFACConfig, lr: float, overrides: dict[str, Any] | None,
                name: str) -> KFACConfig:
    """``base`` with ``lr`` and the ``overrides`` of the argument called ``name``.

    Raises:
        ValueError: naming an unknown key, with the valid ones.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(_KFAC_KWARGS))
    if unknown:
        hint = " (the step size is learning_rate / critic_learning_rate)" if "lr" in unknown else ""
        raise ValueError(f"{name} has unknown key(s) {unknown}{hint}; valid keys: "
                         f"{', '.join(_KFAC_KWARGS)}")
    return dataclasses.replace(base, lr=lr, **overrides)


class ACKTR(OnPolicyAlgorithm):
    """Actor Critic using Kronecker-Factored Trust Region (ACKTR), Wu et al. 2017.

    Paper: https://arxiv.org/abs/1708.05144. The policy is updated with K-FAC natural gradients
    (Fisher metric from actions sampled from the policy's own distribution), the critic with the
    Gauss-Newton metric (``N(V(s), 1)`` with a sampled target), and each step is rescaled by a
    trust region on its approximate KL. Two recipes:

    - **joint** (``separate_critic=False``, default; the paper's Atari recipe): one K-FAC over
      the whole network, policy and value Fisher as one joint distribution, loss
      ``pg - ent_coef * entropy + vf_coef * 0.5 * (R - V)^2``;
    - **separate** (``separate_critic=True``; the paper's MuJoCo recipe): one K-FAC on the actor
      whose step size is adapted toward ``target_kl`` from the KL each update achieved, and one
      on the critic, fitted for ``critic_updates`` K-FAC steps on each batch.

    Only the defaults differ from SB3's A2C for the shared arguments: ``learning_rate`` is
    K-FAC's step size (eta_max; ``kl_clip`` bounds the step), and the value loss is
    ``0.5 * mse`` (SB3's A2C: ``mse``).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: K-FAC's step size (the paper's eta_max), default 0.25; it can be a
        function of the current progress remaining (from 1 to 0). With ``target_kl`` its value
        at the start is the initial step size, which is then adapted (a schedule's later values
        are not used)
    :param n_steps: The number of steps to run for each environment per update, default 20
    :param gamma: Discount factor, default 0.99
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage
        Estimator, default 1.0 (n-step returns, the Atari setting; MuJoCo: 0.97)
    :param ent_coef: Entropy coefficient for the loss calculation, default 0.01
    :param vf_coef: Value function coefficient of the joint loss, default 0.5
    :param max_grad_norm: The maximum value for the gradient clipping (of the policy gradient in
        the separate recipe), default 0.5; None: no clipping
    :param kl_clip: Trust region: bound on the approximate KL of a K-FAC step (delta), default
        0.001; None: no trust region
    :param damping: Damping added to the Kronecker factors' eigenvalues, default 0.01
    :param momentum: Momentum of the K-FAC step, default 0.9
    :param stat_decay: Exponential moving-average decay of the Kronecker factors, default 0.99
    :param inverse_every: Recompute the factors' eigendecompositions every this many updates,
        default 10
    :param cold_start_steps: Plain momentum SGD for this many first updates while the
        statistics warm up, default 10
    :param kfac_kwargs: Other ``acktr.KFAC`` arguments of the (policy) K-FAC: ``stats_every``,
        ``weight_decay``, ``weight_decay_on``, ``damping_scheme``, ``inverse_method``,
        ``cold_start_lr``, ``fallback``, ``async_inverse``, ``stats_batch_size``; default None
    :param separate_critic: Separate recipe (see above), default False. Needs an actor and a
        critic that share no parameters (CnnPolicy: ``share_features_extractor=False``)
    :param target_kl: Separate recipe: divide the policy's step size by 1.5 when an update's KL
        exceeds 2 x target_kl, multiply it by 1.5 below target_kl / 2; default None (off). Not
        PPO's early stopping
    :param critic_updates: Separate recipe: K-FAC steps of the critic on each batch, default 25
    :param critic_learning_rate: Separate recipe: the critic K-FAC's step size, default 1e-3
    :param critic_kfac_kwargs: Separate recipe: the critic's ``acktr.KFAC`` arguments (any of
        those above but ``lr``) over its defaults ``kl_clip=0.3``, ``damping=0.1``,
        ``stat_decay=0.95`` (the original MuJoCo code), otherwise as the policy's defaults
    :param normalize_advantage: Whether to standardize the advantage over each batch, default
        False
    :param use_sde: Not supported (gSDE); True is an error
    :param sde_sample_freq: Not supported (gSDE); must stay -1
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be
        automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param stats_window_size: Window size for the rollout logging, specifying the number of
        episodes to average the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation (SB3's:
        ``net_arch``, ``activation_fn`` (class or name), ``ortho_init``, ``log_std_init``,
        ``features_extractor_class``, ``share_features_extractor``, ...); gSDE options and
        ``optimizer_class`` / ``optimizer_kwargs`` are errors
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or
        wrappers used), 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ACKTRPolicy,
        "CnnPolicy": ACKTRCnnPolicy,
        "MultiInputPolicy": ACKTRMultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[ACKTRPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 0.25,
        n_steps: int = 20,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        kl_clip: float | None = 0.001,
        damping: float = 0.01,
        momentum: float = 0.9,
        stat_decay: float = 0.99,
        inverse_every: int = 10,
        cold_start_steps: int = 10,
        kfac_kwargs: dict[str, Any] | None = None,
        separate_critic: bool = False,
        target_kl: float | None = None,
        critic_updates: int = 25,
        critic_learning_rate: float = 1e-3,
        critic_kfac_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = False,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        if use_sde or sde_sample_freq != -1:
            raise ValueError(
                f"ACKTR does not support gSDE (use_sde={use_sde}, sde_sample_freq="
                f"{sde_sample_freq}): leave use_sde=False and sde_sample_freq=-1"
            )
        for key in sorted(set(policy_kwargs or {}) & set(_UNSUPPORTED_POLICY_KWARGS)):
            raise ValueError(f"ACKTR: policy_kwargs {key!r} is not supported: "
                             f"{_UNSUPPORTED_POLICY_KWARGS[key]}")
        if target_kl is not None and not separate_critic:
            raise ValueError("ACKTR: target_kl (the KL-adaptive step size) belongs to the "
                             "separate recipe; pass separate_critic=True or target_kl=None")
        if critic_updates < 1:
            raise ValueError(f"ACKTR: critic_updates must be >= 1, got {critic_updates}")
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,  # type: ignore[arg-type]
            use_sde=False,
            sde_sample_freq=-1,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete,
                                     spaces.MultiBinary),
        )
        top_level = dict(kl_clip=kl_clip, damping=damping, momentum=momentum,
                         stat_decay=stat_decay, inverse_every=inverse_every,
                         cold_start_steps=cold_start_steps)
        clash = sorted(set(kfac_kwargs or {}) & set(_TOP_LEVEL_KFAC))
        if clash:
            raise ValueError(f"ACKTR: kfac_kwargs {clash} are constructor arguments of their "
                             "own; pass them directly")
        self.kfac_kwargs = {**top_level, **(kfac_kwargs or {})}
        self.separate_critic = separate_critic
        self.target_kl = target_kl
        self.critic_updates = critic_updates
        self.critic_learning_rate = critic_learning_rate
        self.critic_kfac_kwargs = dict(critic_kfac_kwargs or {})
        self.normalize_advantage = normalize_advantage
        # Checked now rather than at the first update.
        kfac_config(KFACConfig(), 1.0, self.kfac_kwargs, "kfac_kwargs")
        kfac_config(_critic_kfac_default(), 1.0, self.critic_kfac_kwargs, "critic_kfac_kwargs")
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ model and optimizers
    def _setup_model(self) -> None:
        super()._setup_model()
        policy = self.policy
        # rl-zoo3's enjoy loads models with a learning rate of 0 (K-FAC needs lr > 0)
        main_lr = max(float(self.lr_schedule(1.0)), MIN_LR)
        main_cfg = kfac_config(KFACConfig(), main_lr, self.kfac_kwargs, "kfac_kwargs")
        if self.separate_critic:
            self._actor, self._critic = actor_and_critic(policy)  # type: ignore[arg-type]
            policy.optimizer = make_kfac(self._actor, main_cfg)
            critic_cfg = kfac_config(_critic_kfac_default(), self.critic_learning_rate,
                                     self.critic_kfac_kwargs, "critic_kfac_kwargs")
            self.critic_optimizer: acktr.KFAC | None = make_kfac(self._critic, critic_cfg)
        else:
            policy.optimizer = make_kfac(policy, main_cfg)
            self.critic_optimizer = None

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # "policy.optimizer" is the (policy) K-FAC: its state_dict holds the Kronecker factors,
        # eigenbases, momentum and step counter, so that training continues after a load.
        state_dicts = ["policy", "policy.optimizer"]
        if self.separate_critic:
            state_dicts.append("critic_optimizer")
        return state_dicts, []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "critic_optimizer", "_actor", "_critic"]

    # ------------------------------------------------------------------ the update
    def _set_learning_rate(self) -> None:
        """SB3's schedule, except with ``target_kl`` (the step size is adapted instead)."""
        if self.target_kl is None:
            lr = self.lr_schedule(self._current_progress_remaining)
            # a linear schedule reaches 0 at the last update; K-FAC needs lr > 0
            self.policy.optimizer.param_groups[0]["lr"] = max(float(lr), MIN_LR)

    def train(self) -> None:
        """One ACKTR update from the whole rollout buffer (:mod:`agents.updates`)."""
        self.policy.set_training_mode(True)
        self._set_learning_rate()
        data = next(iter(self.rollout_buffer.get(batch_size=None)))
        actions = data.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        advantages = standardize(data.advantages) if self.normalize_advantage \
            else data.advantages
        settings = UpdateSettings(self.ent_coef, self.vf_coef, self.max_grad_norm,
                                  self.target_kl, self.critic_updates)
        if self.separate_critic:
            metrics = updates.separate_step(
                self._actor, self._critic, self.policy.optimizer, self.critic_optimizer,
                data.observations, actions, advantages, data.returns, settings)
        else:
            metrics = updates.joint_step(
                self.policy.distribution_and_value, list(self.policy.parameters()),
                self.policy.optimizer, data.observations, actions, advantages, data.returns,
                settings)
        self._n_updates += 1
        self._record(metrics_to_floats(metrics))

    def _record(self, m: dict[str, float]) -> None:
        """SB3's A2C keys, plus K-FAC's (``approx_kl``, ``trust_scale``, ``damping``, ...)."""
        buffer = self.rollout_buffer
        record = self.logger.record
        record("train/n_updates", self._n_updates, exclude="tensorboard")
        record("train/explained_variance",
               explained_variance(buffer.values.flatten(), buffer.returns.flatten()))
        record("train/entropy_loss", -m["entropy"])
        record("train/policy_loss", m["policy_loss"])
        record("train/value_loss", m["value_loss"])
        record("train/learning_rate", m["opt/lr"])
        for key in ("approx_kl", "trust_scale", "damping", "effective_lr", "skipped_steps"):
            if f"opt/{key}" in m:
                record(f"train/{key}", m[f"opt/{key}"])
        if "grad_norm" in m:
            record("train/grad_norm", m["grad_norm"])
        if "kl" in m:  # separate recipe: the KL the policy step achieved
            record("train/kl", m["kl"])
            for key in ("lr", "approx_kl", "trust_scale"):
                record(f"train/critic_{key}", m[f"critic_opt/{key}"])
        if self.policy.log_std_layer is not None:
            record("train/std", float(torch.exp(self.policy.log_std.detach()).mean()))

    def learn(
        self: SelfACKTR,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "ACKTR",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfACKTR:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
