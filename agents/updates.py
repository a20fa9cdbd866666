"""One update of ACKTR or A2C from a rollout batch; each returns its metrics (see
:func:`metrics_to_floats`).

ACKTR and A2C share the loss (policy gradient, entropy bonus, value regression) and differ only
in the optimizer: K-FAC with the trust region (ACKTR, Wu et al. 2017) or RMSprop (A2C).

Fisher pass of ACKTR (REFERENCE section 2): the policy's Fisher metric from actions *sampled
from the policy* (``-mean log pi(a~|s)``) and the critic's Gauss-Newton metric as the Fisher of
``N(V(s), 1)`` with a sampled target (``acktr.fisher_loss(values, "gaussian")``). With a shared
trunk they are one joint distribution ``pi(a|s) p(v|s)``: one backward of the sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

import acktr
from acktr.distributed import average_gradients
from agents.config import Config, KFACConfig
from agents.distributed import mean_over_ranks, standardize_over_ranks
from agents.storage import RolloutBatch


@dataclass
class Optimizers:
    """What an algorithm steps: the main optimizer and, for the MuJoCo recipe, the critic's."""

    main: torch.optim.Optimizer
    critic: acktr.KFAC | None = None

    def state_dict(self, compact: bool = False, drop_stale: bool = False) -> dict[str, object]:
        """Both optimizers' states; ``compact``: K-FAC leaves out the eigenbases it recomputes
        bit for bit on load, ``drop_stale``: also those that lag the factors
        (``acktr.KFAC.state_dict``)."""
        state: dict[str, object] = {"main": _state(self.main, compact, drop_stale)}
        if self.critic is not None:
            state["critic"] = _state(self.critic, compact, drop_stale)
        return state

    def compact_ready(self) -> bool:
        """True when ``state_dict(compact=True)`` holds no eigenbasis (see
        ``acktr.KFACPreconditioner.decompositions_recomputable``)."""
        kfacs = [o for o in (self.main, self.critic) if isinstance(o, acktr.KFAC)]
        return all(o.preconditioner.decompositions_recomputable() for o in kfacs)

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.main.load_state_dict(state["main"])  # type: ignore[arg-type]
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])  # type: ignore[arg-type]


def _state(opt: torch.optim.Optimizer, compact: bool, drop_stale: bool) -> dict[str, object]:
    if isinstance(opt, acktr.KFAC):
        return opt.state_dict(compact=compact, drop_stale=drop_stale)
    return opt.state_dict()


def make_kfac(module: nn.Module, cfg: KFACConfig, lr_scale=None) -> acktr.KFAC:
    """``acktr.KFAC`` from its config section; ``lr_scale(update)`` multiplies lr if given."""
    kwargs = asdict(cfg)
    if lr_scale is not None:
        base = kwargs["lr"]
        kwargs["lr"] = lambda step: base * lr_scale(step)
    return acktr.KFAC(module, **kwargs)


def linear_decay(num_updates: int):
    """``f(update) = 1 - update / num_updates`` (floored at a tiny positive value)."""
    return lambda step: max(1.0 - step / max(num_updates, 1), 1e-8)


def make_optimizers(policy: nn.Module, cfg: Config) -> Optimizers:
    """Build the optimizers the config asks for (see :class:`Optimizers`)."""
    algo = cfg.algo
    decay = linear_decay(cfg.num_updates) if algo.lr_schedule == "linear" else None
    if algo.algo == "a2c":
        opt = torch.optim.RMSprop(
            policy.parameters(), lr=algo.rmsprop_lr, alpha=algo.rmsprop_alpha, eps=algo.rmsprop_eps
        )
        return Optimizers(main=opt)
    if algo.separate_critic:
        actor, critic = getattr(policy, "actor", None), getattr(policy, "critic", None)
        if actor is None or critic is None:
            raise ValueError(
                "algo.separate_critic needs a policy with separate actor and critic networks "
                f"(MLP policies); {type(policy).__name__} shares its trunk"
            )
        # The policy's step size is adapted toward target_kl, so it stays a plain number.
        critic_opt = make_kfac(critic, cfg.critic_kfac)
        return Optimizers(main=make_kfac(actor, cfg.kfac), critic=critic_opt)
    return Optimizers(main=make_kfac(policy, cfg.kfac, decay))


def policy_fisher_loss(dist) -> Tensor:
    """``-mean log pi(a~|s)`` with ``a~`` sampled from the current policy."""
    return -dist.log_prob(dist.fisher_sample()).mean()


def fisher_rows(num_rows: int, kfac: acktr.KFAC, device: torch.device) -> Tensor | None:
    """Rows of the batch for a Fisher pass run on its own forward: a random subset of the
    optimizer's ``stats_batch_size`` examples, or None (a Fisher backward through the training
    forward, which K-FAC subsamples itself).

    Rows of an MLP batch do not interact, so the factors from a forward and backward of the
    subset are the ones ``KFAC(stats_batch_size=m)`` would keep from the whole batch; the other
    rows' Fisher backward is saved. That pays for the extra forward of ``m`` rows only when the
    batch holds at least ``1.5 m`` rows (a backward costs about two forwards); below, None.
    """
    m = kfac.preconditioner.stats_batch_size
    if m is None or 2 * num_rows < 3 * m:
        return None
    return torch.randperm(num_rows, device=device)[:m]


def _advantages(batch: RolloutBatch, cfg: Config) -> Tensor:
    adv = batch.advantages
    # over the whole batch of every rank (in one process: agents.returns.standardize)
    return standardize_over_ranks(adv) if cfg.algo.normalize_advantages else adv


def _clip(params, max_norm: float | None) -> Tensor | None:
    if max_norm is None:
        return None
    return nn.utils.clip_grad_norm_(params, max_norm)


def joint_update(policy: nn.Module, opts: Optimizers, batch: RolloutBatch, cfg: Config) -> dict:
    """ACKTR with one K-FAC over the whole network, or A2C with RMSprop: one gradient step."""
    algo = cfg.algo
    dist, values = policy(batch.obs)
    log_probs = dist.log_prob(batch.actions)
    entropy = dist.entropy().mean()
    pg_loss = -(_advantages(batch, cfg).detach() * log_probs).mean()
    vf_loss = 0.5 * (batch.returns - values).pow(2).mean()
    loss = pg_loss - algo.ent_coef * entropy + algo.vf_coef * vf_loss
    opt = opts.main
    if isinstance(opt, acktr.KFAC) and opt.stats_due:
        with opt.record_stats():
            fisher = policy_fisher_loss(dist) + acktr.fisher_loss(values, "gaussian")
            fisher.backward(retain_graph=True)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(policy.parameters())  # data parallel: no-op in one process
    grad_norm = _clip(policy.parameters(), algo.max_grad_norm)
    opt.step()
    metrics = _loss_metrics(pg_loss, vf_loss, entropy, grad_norm)
    metrics.update(_optimizer_metrics(opt, "opt"))
    return metrics


def separate_update(policy: nn.Module, opts: Optimizers, batch: RolloutBatch, cfg: Config) -> dict:
    """The original MuJoCo recipe: K-FAC on the actor with a KL-adaptive step size, and the
    critic fitted by its own K-FAC for ``critic_updates`` steps on the batch."""
    algo = cfg.algo
    actor, critic = policy.actor, policy.critic  # type: ignore[attr-defined]
    opt, critic_opt = opts.main, opts.critic
    assert isinstance(opt, acktr.KFAC) and critic_opt is not None
    obs = batch.obs.float()
    dist = _forward_with_fisher_pass(actor, obs, opt, policy_fisher_loss)
    log_probs = dist.log_prob(batch.actions)
    entropy = dist.entropy().mean()
    pg_loss = -(_advantages(batch, cfg).detach() * log_probs).mean() - algo.ent_coef * entropy
    opt.zero_grad(set_to_none=True)
    pg_loss.backward()
    average_gradients(actor.parameters())
    grad_norm = _clip(actor.parameters(), algo.max_grad_norm)
    opt.step()
    with torch.no_grad():
        kl = float(dist.kl(actor(obs)).mean()) if hasattr(dist, "kl") else float("nan")
    kl = mean_over_ranks(kl)  # every rank adapts its step size identically
    if algo.target_kl is not None:
        adapt_step_size(opt, kl, algo.target_kl)

    for _ in range(algo.critic_updates):
        values = _forward_with_fisher_pass(critic, obs, critic_opt, _value_fisher_loss)
        vf_loss = 0.5 * (batch.returns - values.squeeze(-1)).pow(2).mean()
        critic_opt.zero_grad(set_to_none=True)
        vf_loss.backward()
        average_gradients(critic.parameters())
        critic_opt.step()
    metrics = _loss_metrics(pg_loss, vf_loss, entropy, grad_norm)
    metrics["kl"] = kl
    metrics.update(_optimizer_metrics(opt, "opt"))
    metrics.update(_optimizer_metrics(critic_opt, "critic_opt"))
    return metrics


def _forward_with_fisher_pass(module: nn.Module, obs: Tensor, opt: acktr.KFAC,
                              fisher_loss: Callable[[Any], Tensor]) -> Any:
    """``module(obs)``, after ``opt``'s Fisher pass when its statistics are due: on the random
    rows of :func:`fisher_rows` (a separate forward) or, without a subset, back-propagated
    through this forward (whose graph is kept for the training loss)."""
    if not opt.stats_due:
        return module(obs)
    rows = fisher_rows(len(obs), opt, obs.device)
    if rows is not None:
        with opt.record_stats():
            fisher_loss(module(obs[rows])).backward()
        return module(obs)
    out = module(obs)
    with opt.record_stats():
        fisher_loss(out).backward(retain_graph=True)
    return out


def _value_fisher_loss(values: Tensor) -> Tensor:
    """The critic's Gauss-Newton metric: a Gaussian output with a sampled target."""
    return acktr.fisher_loss(values.squeeze(-1), "gaussian")


def adapt_step_size(opt: acktr.KFAC, kl: float, target_kl: float) -> None:
    """ACKTR's MuJoCo rule: divide lr by 1.5 if KL > 2 target, multiply if KL < target / 2."""
    group = opt.param_groups[0]
    if kl > 2 * target_kl:
        group["lr"] = max(group["lr"] / 1.5, 1e-8)
    elif kl < target_kl / 2:
        group["lr"] = min(group["lr"] * 1.5, 1.0)


def update(policy: nn.Module, opts: Optimizers, batch: RolloutBatch, cfg: Config) -> dict:
    """Dispatch to the update the config describes.

    Returns the metrics as 0-dim device tensors or floats: reading a tensor on the host waits for
    the device, so the training loop converts them (:func:`metrics_to_floats`) only when it logs.
    """
    if cfg.algo.algo == "acktr" and cfg.algo.separate_critic:
        return separate_update(policy, opts, batch, cfg)
    return joint_update(policy, opts, batch, cfg)


def metrics_to_floats(metrics: dict[str, Tensor | float]) -> dict[str, float]:
    """Host floats of an update's metrics (one device sync for all of them)."""
    tensors = {k: v for k, v in metrics.items() if isinstance(v, Tensor)}
    values = torch.stack([v.detach().double().reshape(()) for v in tensors.values()]).tolist() \
        if tensors else []
    out = {k: float(v) for k, v in metrics.items() if not isinstance(v, Tensor)}
    out.update(zip(tensors, values, strict=True))
    return {k: out[k] for k in metrics}


def _loss_metrics(pg: Tensor, vf: Tensor, ent: Tensor, grad_norm: Tensor | None) -> dict:
    out = {"policy_loss": pg.detach(), "value_loss": vf.detach(), "entropy": ent.detach()}
    if grad_norm is not None:
        out["grad_norm"] = grad_norm.detach()
    return out


def _optimizer_metrics(opt: torch.optim.Optimizer, prefix: str) -> dict:
    if isinstance(opt, acktr.KFAC):
        m = opt.metric_tensors()
        keys = ("lr", "effective_lr", "approx_kl", "damping", "trust_scale", "skipped_steps")
        return {f"{prefix}/{k}": m[k] for k in keys if k in m}
    return {f"{prefix}/lr": float(opt.param_groups[0]["lr"])}
