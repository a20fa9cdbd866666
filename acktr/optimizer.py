"""``KFAC``: the K-FAC preconditioner, momentum and the ACKTR trust region as a torch optimizer."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from acktr.adaptive import AdaptiveKFAC, AdaptiveSettings, Closure
from acktr.blocks import DampingScheme, InverseMethod
from acktr.distributed import GroupSpec
from acktr.losses import FisherKind
from acktr.preconditioner import Fallback, KFACPreconditioner, LossReduction
from acktr.schedules import (
    Schedule,
    check_choice,
    check_decay,
    check_non_negative,
    check_positive,
    resolve,
)
from acktr.tridiagonal import STRUCTURES, Structure, TridiagonalKFACPreconditioner

DEFAULT_LR = 0.1
DEFAULT_MOMENTUM = 0.9
DEFAULT_DAMPING = 0.1


class KFAC(torch.optim.Optimizer):
    """K-FAC natural-gradient descent with momentum and an optional KL trust region (ACKTR), or
    with step size, momentum and damping from the exact quadratic model (``adaptive=True``).

    One ``step()`` reads as its phases: precondition the gradient with the Kronecker-factored
    Fisher (refreshing eigenbases when due), rescale it by the trust region, and take a momentum
    step. The step is skipped, with a warning, if the gradient holds NaN/Inf.

    Update, with ``Delta = (F + lambda I)^-1 (grad + weight_decay * theta)``:

    * trust region (Wu et al. 2017, ACKTR code): ``nu = min(1, sqrt(kl_clip / (lr^2 Delta^T
      grad)))``, so the step's approximate KL ``lr^2 nu^2 Delta^T F Delta`` is at most ``kl_clip``;
    * momentum as an average of steps: ``buf <- momentum * buf + (1 - momentum) * nu * Delta``,
      ``theta <- theta - lr * buf`` (ACKTR's SGD with learning rate ``lr * (1 - momentum)``), so
      ``lr`` is the size of the steady-state step whatever the momentum.

    With ``lr=1``, ``momentum=0`` and small damping, one step is the damped natural-gradient
    (Gauss-Newton) step; on a single linear layer with squared error it lands on the
    least-squares solution.

    Adaptive mode (Martens & Grosse 2015, sections 6-7; :mod:`acktr.adaptive`): no learning
    rate, momentum or damping to choose. ``step(closure)`` takes a closure that re-evaluates the
    model on the batch and returns the training loss (a batch mean), as for
    ``torch.optim.LBFGS``; the optimizer runs the backward passes, records the curvature
    statistics, and picks ``delta = alpha Delta + mu delta_0`` by minimizing the exact quadratic
    model (exact Fisher/Gauss-Newton products), adapting ``lambda`` (Levenberg-Marquardt) and the
    factored damping ``gamma``::

        opt = acktr.KFAC(model, adaptive=True)
        for x, y in loader:
            opt.step(lambda: F.cross_entropy(model(x), y))

    The model must be called once in the closure and return the output tensor the loss is
    computed from (or the closure returns ``(loss, outputs)``). The output distribution
    (``loss_kind``) is recognised from the loss's curvature at the first step, or given.

    Args:
        model: the network whose parameters are optimized (see :class:`KFACPreconditioner`
            for which parameters get Kronecker blocks and which the fallback).
        lr: step size (float or callable of the step). Default (None) 0.1. Not in adaptive mode.
        momentum: in [0, 1). Default (None) 0.9. Not in adaptive mode.
        damping: Tikhonov damping ``lambda`` (float or callable). Default (None) 0.1: without a
            trust region it is the value that trained every supervised example of
            ``docs/benchmarks.md`` (1e-3 and 1e-2 diverged on the CNN); with ``kl_clip=0.01``,
            ``damping=0.01`` is faster there. In adaptive mode, the initial ``lambda`` (a
            float; default :data:`acktr.adaptive.INITIAL_DAMPING`).
        weight_decay: L2 coefficient added to the gradient before preconditioning. Default 0.
        weight_decay_on: ``"all"`` parameters (default) or only ``"weights"``: parameters with
            two or more dimensions (Linear and Conv2d weights; not biases, ``BroadcastBias``
            vectors or norm scales), as the original ACKTR code decays its dense weights only.
        stat_decay: EMA decay of the curvature factors. Default 0.95.
        kl_clip: trust-region bound on the step's approximate KL (float, callable, or None for
            no trust region). Default None; ACKTR uses 0.001.
        stats_every: record statistics every this many steps. Default 1.
        inverse_every: refresh eigendecompositions every this many steps. Default 10.
        damping_scheme: ``"eigen"`` or ``"tikhonov"`` (see :mod:`acktr.blocks`). Default None:
            ``"eigen"`` for the block-diagonal structure, ``"tikhonov"`` (the only scheme it
            supports) for the block-tridiagonal one.
        inverse_method: ``"eigen"`` or ``"inverse"``. Default ``"eigen"``.
        cold_start_steps: the first this many steps are plain momentum SGD (statistics are
            still recorded). Default 0; ACKTR uses 10.
        cold_start_lr: step size during the cold start (None: ``lr``). Default None.
        fallback: ``"diagonal"`` or ``"identity"`` for parameters no block claims. Default
            ``"diagonal"``.
        loss_reduction: ``"mean"`` (default) or ``"sum"`` over the batch.
        exclude: modules or module names that get no Kronecker block.
        async_inverse: overlap eigendecompositions with the next steps in a background thread
            (stale by exactly one refresh; deterministic). Default False.
        stats_batch_size: examples per statistics batch used for the factors (a random subset;
            None: all). Default None.
        structure: ``"block_diagonal"`` (default: independent layers, :class:`KFACPreconditioner`)
            or ``"block_tridiagonal"`` (the chain model between layers, Martens & Grosse 2015
            section 4.3, for MLPs: :class:`acktr.tridiagonal.TridiagonalKFACPreconditioner`).
        process_group: the processes K-FAC's collectives span: ``"default"`` (default:
            torch.distributed's default group whenever one is initialized; None means the same),
            a ``torch.distributed.ProcessGroup``, or ``"local"``: this process alone, for a model
            one rank trains by itself inside a distributed job (see :mod:`acktr.distributed`).
        adaptive: ``True`` for adaptive mode with the paper's constants, or an
            :class:`acktr.AdaptiveSettings` (intervals ``T1``/``T2``, ``adapt_every`` to amortize
            the curvature products, ...). Default False. In adaptive mode ``gamma`` is the
            damping of the Kronecker factors (``"eigen"``: ``(A (x) G + gamma^2 I)^-1``;
            ``"tikhonov"``: the paper's ``(A + pi gamma I) (x) (G + gamma / pi I)``); ``lr``,
            ``momentum``, ``kl_clip`` and ``cold_start_steps`` do not apply, and
            ``inverse_method="eigen"`` and the block-diagonal structure are required. Under
            torch.distributed the gradients are averaged over ``process_group`` by the
            optimizer (do not also average them yourself).
        loss_kind: adaptive mode: the output distribution whose Fisher loss gives the
            statistics (``"categorical"``, ``"gaussian"``, ``"bernoulli"``). Default None:
            recognised from the loss's curvature with respect to the outputs at the first step
            (an error if it is none of them). The curvature products use the loss's own
            output Hessian either way.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: Schedule | None = None,
        momentum: float | None = None,
        damping: Schedule | None = None,
        weight_decay: float = 0.0,
        weight_decay_on: Literal["all", "weights"] = "all",
        stat_decay: float = 0.95,
        kl_clip: Schedule | None = None,
        stats_every: int = 1,
        inverse_every: int = 10,
        damping_scheme: DampingScheme | None = None,
        inverse_method: InverseMethod = "eigen",
        cold_start_steps: int = 0,
        cold_start_lr: Schedule | None = None,
        fallback: Fallback = "diagonal",
        loss_reduction: LossReduction = "mean",
        exclude: Iterable[nn.Module | str] = (),
        async_inverse: bool = False,
        stats_batch_size: int | None = None,
        structure: Structure = "block_diagonal",
        process_group: GroupSpec = "default",
        adaptive: bool | AdaptiveSettings = False,
        loss_kind: FisherKind | None = None,
    ) -> None:
        settings = _adaptive_settings(adaptive, damping, lr, momentum, kl_clip, cold_start_steps,
                                      inverse_method, structure)
        if settings is not None:
            damping = settings.initial_damping
        lr = DEFAULT_LR if lr is None else lr
        momentum = DEFAULT_MOMENTUM if momentum is None else momentum
        damping = DEFAULT_DAMPING if damping is None else damping
        check_positive("lr", lr)
        check_decay("momentum", momentum)
        check_non_negative("weight_decay", weight_decay)
        check_choice("weight_decay_on", weight_decay_on, ("all", "weights"))
        if kl_clip is not None:
            check_positive("kl_clip", kl_clip)
        if cold_start_lr is not None:
            check_positive("cold_start_lr", cold_start_lr)
        if isinstance(cold_start_steps, bool) or not isinstance(cold_start_steps, int) or (
            cold_start_steps < 0
        ):
            raise ValueError(f"cold_start_steps must be an integer >= 0, got {cold_start_steps!r}")
        check_choice("structure", structure, STRUCTURES)
        tridiagonal = structure == "block_tridiagonal"
        if damping_scheme is None:
            damping_scheme = "tikhonov" if tridiagonal else "eigen"
        preconditioner = TridiagonalKFACPreconditioner if tridiagonal else KFACPreconditioner
        self.preconditioner = preconditioner(
            model,
            damping=damping,
            stat_decay=stat_decay,
            stats_every=stats_every,
            inverse_every=inverse_every,
            damping_scheme=damping_scheme,
            inverse_method=inverse_method,
            fallback=fallback,
            loss_reduction=loss_reduction,
            exclude=exclude,
            async_inverse=async_inverse,
            stats_batch_size=stats_batch_size,
            process_group=process_group,
        )
        self.process_group = self.preconditioner.process_group
        params = [p for p in model.parameters() if p.requires_grad]
        defaults = {
            "lr": resolve(lr, 0),
            "momentum": float(momentum),
            "weight_decay": float(weight_decay),
        }
        super().__init__(params, defaults)
        # Schedules live outside param_groups so state_dict() stays plain data.
        self._lr: Callable[[int], float] | None = lr if callable(lr) else None
        self._kl_clip = kl_clip
        self._decay_weights_only = weight_decay_on == "weights"
        self._cold_start_steps = cold_start_steps
        self._cold_start_lr = cold_start_lr
        self.steps = 0
        self._skipped = torch.zeros((), dtype=torch.long)
        self._reported_skipped = 0
        self._last: dict[str, Tensor] = {}
        self._last_lr = 0.0
        self._adaptive = None if settings is None else AdaptiveKFAC(self, model, settings,
                                                                    loss_kind)

    # ------------------------------------------------------------------ statistics
    def record_stats(self) -> AbstractContextManager[None]:
        """Context in which backward passes record curvature statistics (see the preconditioner)."""
        return self.preconditioner.record_stats()

    @property
    def stats_due(self) -> bool:
        """True when the next step records statistics; skip the Fisher backward otherwise."""
        return self.preconditioner.stats_due

    def assignments(self) -> dict[str, str]:
        """Which curvature each parameter gets (``"kronecker:<module>"``, ``"diagonal"``, ...)."""
        return self.preconditioner.assignments()

    @property
    def damping(self) -> float:
        """The damping at the current step (adaptive mode: ``lambda``)."""
        if self._adaptive is not None:
            return self._adaptive.state.damping
        return resolve(self.preconditioner.damping, self.steps)

    @property
    def adaptive(self) -> bool:
        """True in adaptive mode."""
        return self._adaptive is not None

    @property
    def weight_decay(self) -> float:
        return float(self.param_groups[0]["weight_decay"])

    def decayed(self, params: list[Tensor]) -> list[Tensor]:
        """Those of ``params`` that weight decay applies to (``weight_decay_on``)."""
        return [p for p in params if p.dim() >= 2] if self._decay_weights_only else params

    # ------------------------------------------------------------------ the step
    def _current_lr(self) -> float:
        group = self.param_groups[0]
        if self._lr is not None:
            group["lr"] = resolve(self._lr, self.steps)
        check_positive("lr", group["lr"])
        return float(group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | Closure | None = None) -> float | None:  # type: ignore[override]
        """Take one K-FAC step from the gradients in ``.grad``; see the class docstring.

        After it, ``.grad`` holds the preconditioned (natural) gradient. In adaptive mode,
        ``closure`` is required: it re-evaluates the model and returns the training loss (or
        ``(loss, outputs)``); the optimizer computes the gradients itself. Returns the loss
        before the step.
        """
        if self._adaptive is not None:
            if closure is None:
                raise ValueError(
                    "KFAC(adaptive=True).step() needs a closure that re-evaluates the model on "
                    "the batch and returns the loss: opt.step(lambda: loss_fn(model(x), y))"
                )
            return self._adaptive.step(closure)  # type: ignore[return-value]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        lr = self._current_lr()
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return loss
        self._add_weight_decay(self.decayed(params), group["weight_decay"])
        cold = self.steps < self._cold_start_steps
        if cold:
            vg = torch.stack([(p.grad * p.grad).sum() for p in params]).sum()
            if self._cold_start_lr is not None:
                lr = resolve(self._cold_start_lr, self.steps)
            scale = torch.ones_like(vg)
        else:
            self.preconditioner.steps = self.steps
            vg = self.preconditioner.step()
            scale = self._trust_region_scale(vg, lr)
        ok = torch.isfinite(vg)
        self._momentum_step(params, lr, group["momentum"], scale, ok)
        self._skipped = self._skipped.to(vg.device) + (~ok).long()
        self._last = {"quad": vg, "trust_scale": scale}
        self._last_lr = lr
        self.steps += 1
        self.preconditioner.steps = self.steps
        if self.steps % self.preconditioner.inverse_every == 0:
            self._report_skipped_steps()
        return loss

    @staticmethod
    def _add_weight_decay(params: list[Tensor], weight_decay: float) -> None:
        if weight_decay:
            for p in params:
                p.grad.add_(p, alpha=weight_decay)

    def _trust_region_scale(self, vg: Tensor, lr: float) -> Tensor:
        """ACKTR: ``nu = min(1, sqrt(kl_clip / (lr^2 Delta^T grad)))`` (Wu et al. 2017)."""
        if self._kl_clip is None:
            return torch.ones_like(vg)
        kl_clip = check_positive("kl_clip", self._kl_clip, self.steps)
        quad = (vg * lr * lr).clamp_min(torch.finfo(vg.dtype).tiny)
        return torch.sqrt(kl_clip / quad).clamp(max=1.0)

    def _momentum_step(
        self, params: list[Tensor], lr: float, momentum: float, scale: Tensor, ok: Tensor
    ) -> None:
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            bufs.append(state["momentum_buffer"])
        # Skipping without a host sync: keep = 0 leaves buf and theta unchanged (the NaN/Inf in
        # the gradient are zeroed first so that 0 * NaN does not leak in).
        keep = ok.to(scale.dtype)
        grads = [torch.nan_to_num(p.grad, 0.0, 0.0, 0.0) for p in params]
        # buf <- buf * (1 - keep (1 - m)) + keep (1 - m) nu Delta ; theta <- theta - keep lr buf
        torch._foreach_mul_(bufs, 1.0 - keep * (1.0 - momentum))
        torch._foreach_mul_(grads, keep * (1.0 - momentum) * scale)
        torch._foreach_add_(bufs, grads)
        torch._foreach_add_(params, torch._foreach_mul(bufs, -lr * keep))

    def _report_skipped_steps(self) -> None:
        skipped = int(self._skipped)
        if skipped > self._reported_skipped:
            warnings.warn(
                f"K-FAC skipped {skipped - self._reported_skipped} step(s) whose gradients held "
                "NaN/Inf; parameters and momentum were left unchanged",
                RuntimeWarning,
                stacklevel=3,
            )
            self._reported_skipped = skipped

    def metrics(self) -> dict[str, float]:
        """Diagnostics of the last step, as floats (this syncs with the device).

        Keys: ``lr``; ``damping``; ``trust_scale`` (``nu``); ``effective_lr`` (``lr * nu``);
        ``approx_kl`` (``lr^2 nu^2 Delta^T grad``, the quantity ``kl_clip`` bounds);
        ``skipped_steps`` (total steps skipped for NaN/Inf gradients); ``skipped_stats``
        (total curvature updates skipped for NaN/Inf statistics). Also issues the pending
        warnings about skipped steps. :meth:`metric_tensors` gives the same without a sync.
        """
        self._report_skipped_steps()
        return {k: float(v) for k, v in self.metric_tensors().items()}

    def metric_tensors(self) -> dict[str, Tensor | float]:
        """The keys of :meth:`metrics`, as 0-dim device tensors (or host floats): no host sync,
        so a training loop can collect them every step and convert only when it logs."""
        out: dict[str, Tensor | float] = {"damping": self.damping, "skipped_steps": self._skipped}
        pre = self.preconditioner
        counts = [b.n_skipped for b in [*pre.blocks.values(), *pre.diagonal_blocks.values()]]
        out["skipped_stats"] = torch.stack(counts).sum() if counts else 0.0
        if self._adaptive is not None:
            out.update(self._adaptive.metrics())
        elif self._last:
            lr = self._last_lr
            nu, quad = self._last["trust_scale"], self._last["quad"]
            out.update(lr=lr, trust_scale=nu, effective_lr=lr * nu, approx_kl=lr**2 * nu**2 * quad)
        return out

    # ------------------------------------------------------------------ state
    def state_dict(  # type: ignore[override]
        self, compact: bool = False, drop_stale: bool = False
    ) -> dict[str, object]:
        """Optimizer state (momentum buffers, hyperparameters) plus all K-FAC state.

        ``compact``: leave out the eigenbases that loading recomputes bit for bit;
        ``drop_stale``: also those that lag the factors (see
        ``KFACPreconditioner.state_dict``). Defaults False."""
        state = super().state_dict()
        state["kfac"] = self.preconditioner.state_dict(compact=compact, drop_stale=drop_stale)
        state["kfac_steps"] = self.steps
        state["kfac_skipped"] = self._skipped.clone()
        if self._adaptive is not None:
            state["kfac_adaptive"] = self._adaptive.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, object]) -> None:  # type: ignore[override]
        state = dict(state_dict)
        missing = [k for k in ("kfac", "kfac_steps", "kfac_skipped") if k not in state]
        if missing:
            raise ValueError(f"not a KFAC state dict: missing {missing}")
        self.preconditioner.load_state_dict(state.pop("kfac"))  # type: ignore[arg-type]
        self.steps = int(state.pop("kfac_steps"))  # type: ignore[arg-type]
        self._skipped = state.pop("kfac_skipped").clone()  # type: ignore[union-attr]
        self._reported_skipped = int(self._skipped)
        adaptive = state.pop("kfac_adaptive", None)
        if self._adaptive is not None and adaptive is not None:
            self._adaptive.load_state_dict(adaptive)  # type: ignore[arg-type]
        super().load_state_dict(state)


def _adaptive_settings(
    adaptive: bool | AdaptiveSettings, damping: Schedule | None, lr: Schedule | None,
    momentum: float | None, kl_clip: Schedule | None, cold_start_steps: int,
    inverse_method: str, structure: str,
) -> AdaptiveSettings | None:
    """The adaptive settings (None when not adaptive), refusing options adaptive mode sets
    itself or does not support, each by name."""
    if adaptive is False:
        return None
    if not isinstance(adaptive, (bool, AdaptiveSettings)):
        raise ValueError(f"adaptive must be True, False or an AdaptiveSettings, got {adaptive!r}")
    clashes = {"lr": lr is not None, "momentum": momentum is not None,
               "kl_clip": kl_clip is not None, "cold_start_steps": cold_start_steps != 0}
    bad = [name for name, given in clashes.items() if given]
    if bad:
        raise ValueError(
            f"KFAC(adaptive=True) chooses the step itself: do not pass {', '.join(bad)} "
            "(alpha and mu come from the quadratic model, lambda adapts)"
        )
    if inverse_method != "eigen" or structure != "block_diagonal":
        raise ValueError(
            "KFAC(adaptive=True) needs inverse_method='eigen' and structure='block_diagonal' "
            f"(its damping changes every few steps), got {inverse_method!r} / {structure!r}"
        )
    settings = adaptive if isinstance(adaptive, AdaptiveSettings) else None
    if damping is not None:
        if callable(damping):
            raise ValueError("KFAC(adaptive=True): damping is the initial lambda, a number")
        check_positive("damping", damping)
        return replace(settings or AdaptiveSettings(), initial_damping=float(damping))
    return settings or AdaptiveSettings()
