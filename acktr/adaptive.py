"""Adaptive K-FAC: step size, momentum and damping from the exact quadratic model.

Martens & Grosse (2015), sections 6.4-6.6 and 7. With ``h`` the training loss plus
``eta/2 ||theta||^2`` (``eta``: weight decay), ``F`` the exact Fisher / Gauss-Newton matrix of the
model's output distribution on the current batch (:mod:`acktr.curvature`) and ``g = grad h``:

* proposal ``Delta = -F~^-1 g`` from the Kronecker-factored approximation ``F~`` damped by
  ``gamma``: ``(A (x) G + gamma^2 I)^-1`` in the eigenbases (``damping_scheme="eigen"``, the
  default) or the paper's factored Tikhonov ``(A + pi gamma I) (x) (G + gamma / pi I)``
  (``"tikhonov"``, section 6.3);
* update ``delta = alpha Delta + mu delta_0`` (``delta_0``: the previous update), with
  ``(alpha, mu)`` minimizing the damped quadratic model
  ``M(delta) = 1/2 delta^T (F + (lambda + eta) I) delta + g^T delta + h`` over the two directions
  (section 7): ``[alpha, mu] = -A^-1 [g^T Delta, g^T delta_0]`` with
  ``A_ij = v_i^T (F + (lambda + eta) I) v_j``, ``v = (Delta, delta_0)``. At the first step, or when
  the two directions are parallel, the 1-D solve ``alpha = -g^T Delta / A_11`` (section 6.4);
* every ``T1`` steps, the reduction ratio ``rho = (h(theta + delta) - h(theta)) / (M(delta) -
  M(0))`` adapts ``lambda`` by the Levenberg-Marquardt rule (section 6.5): ``lambda <- omega1
  lambda`` if ``rho > 3/4``, ``lambda <- lambda / omega1`` if ``rho < 1/4``, ``omega1 =
  (19/20)^T1``. ``M`` in ``rho`` leaves out the ``lambda`` term (it includes ``eta``), as
  kfac-jax does by default and as in Martens (2010);
* every ``T2`` steps, ``gamma`` is chosen greedily among ``{gamma, omega2 gamma, gamma /
  omega2}``, ``omega2 = (19/20)^(T2/2)``, as the one whose update (after its own ``(alpha, mu)``)
  has the lowest damped model value (section 6.6).

A step whose new loss or ``rho`` is NaN/Inf is undone and ``lambda`` grows; so is the previous
step when a step starts at a non-finite loss.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from acktr.curvature import (
    OutputProduct,
    fisher_output_product,
    jacobian_vector_products,
    loss_output_product,
    match_fisher_kind,
    quadratic_forms,
)
from acktr.distributed import average_gradients, group_mean
from acktr.losses import FISHER_KINDS, FisherKind, fisher_loss
from acktr.schedules import check_decay, check_interval, check_non_negative, check_positive

if TYPE_CHECKING:
    from acktr.optimizer import KFAC

Closure = Callable[[], "Tensor | tuple[Tensor, Tensor]"]

PAPER_DECAY = 19.0 / 20.0
"""Martens & Grosse (2015): ``omega1 = (19/20)^T1``, ``omega2 = sqrt(19/20)^T2``."""

INITIAL_DAMPING = 1e-3
"""``lambda`` at the start. Not the paper's 150: see docs/kfac.md ("Adaptive mode")."""


@dataclass(frozen=True)
class AdaptiveSettings:
    """The constants of the adaptation (defaults: the paper's, Martens & Grosse 2015 sec. 6-7).

    Attributes:
        initial_damping: ``lambda`` at the start. Default :data:`INITIAL_DAMPING`.
        damping_interval: ``T1``: steps between Levenberg-Marquardt updates of ``lambda``. 5.
        gamma_interval: ``T2``: steps between greedy updates of ``gamma``. 20.
        decay: per-step factor ``19/20`` behind ``omega1 = decay^T1``, ``omega2 =
            sqrt(decay)^T2``.
        min_damping: floor of ``lambda`` (and ``gamma^2``). 1e-8.
        adapt_every: solve for ``(alpha, mu)`` every this many steps (and at every ``T1``/``T2``
            step); in between, reuse the last ``(alpha, mu)`` without curvature products. 1.
    """

    initial_damping: float = INITIAL_DAMPING
    damping_interval: int = 5
    gamma_interval: int = 20
    decay: float = PAPER_DECAY
    min_damping: float = 1e-8
    adapt_every: int = 1

    def __post_init__(self) -> None:
        check_positive("damping", self.initial_damping)
        check_interval("damping_interval", self.damping_interval)
        check_interval("gamma_interval", self.gamma_interval)
        check_interval("adapt_every", self.adapt_every)
        check_non_negative("min_damping", self.min_damping)
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {self.decay!r}")
        check_decay("decay", self.decay)

    @property
    def omega1(self) -> float:
        return self.decay**self.damping_interval

    @property
    def omega2(self) -> float:
        return math.sqrt(self.decay) ** self.gamma_interval


@dataclass
class QuadraticModel:
    """The quadratic model restricted to directions ``v_i``: ``curvature[i, j] = v_i^T F v_j``
    (exact), ``inner[i, j] = v_i^T v_j``, ``l2[i, j] = eta v_i^T v_j`` over the decayed
    parameters, ``grad[i] = g^T v_i``."""

    curvature: Tensor
    inner: Tensor
    l2: Tensor
    grad: Tensor

    def select(self, idx: Sequence[int]) -> QuadraticModel:
        i = torch.tensor(list(idx))
        return QuadraticModel(
            self.curvature[i][:, i], self.inner[i][:, i], self.l2[i][:, i], self.grad[i]
        )


@dataclass
class Solution:
    """Coefficients of the directions and the model's values there: ``change`` = ``M(delta) -
    M(0)`` without the ``lambda`` term (for ``rho``), ``damped_change`` with it."""

    coefficients: Tensor
    change: float
    damped_change: float


def solve_quadratic_model(model: QuadraticModel, damping: float) -> Solution:
    """Minimize ``1/2 w^T (C + L2 + lambda D) w + b^T w`` over the coefficients ``w`` (section 7).

    Falls back to the first direction alone (section 6.4) when the 2x2 system is singular (the
    first step, where ``delta_0 = 0``, or parallel directions). Float64 throughout.
    """
    c = model.curvature + model.l2
    a = c + damping * model.inner
    b = model.grad
    n = b.shape[0]
    w = torch.zeros(n, dtype=torch.float64)
    if n > 1:
        scale = float(a.diagonal().abs().max())
        det = float(torch.linalg.det(a))
        if math.isfinite(det) and scale > 0 and abs(det) > 1e-12 * scale * scale:
            w = -torch.linalg.solve(a, b)
    if n == 1 or not bool(w.any()):
        w = torch.zeros(n, dtype=torch.float64)
        if float(a[0, 0]) > 0:
            w[0] = -b[0] / a[0, 0]
    change = float(0.5 * w @ c @ w + b @ w)
    damped = float(0.5 * w @ a @ w + b @ w)
    return Solution(w, change, damped)


def levenberg_marquardt(damping: float, rho: float, omega: float) -> float:
    """Section 6.5: ``damping * omega`` if ``rho > 3/4``, ``damping / omega`` if ``rho < 1/4`` (or
    NaN), else unchanged (``0 < omega < 1``)."""
    if math.isnan(rho) or rho < 0.25:
        return damping / omega
    if rho > 0.75:
        return damping * omega
    return damping


@dataclass
class AdaptiveState:
    """What adaptive K-FAC carries from step to step (all plain data; see ``state_dict``)."""

    damping: float
    gamma: float
    loss_kind: str | None = None
    loss_scale: float = 1.0
    kind_fixed: bool = False
    rejected: int = 0
    in_a_row: int = 0
    alpha: float = math.nan
    mu: float = math.nan
    rho: float = math.nan
    loss: float = math.nan
    new_loss: float = math.nan
    predicted_change: float = math.nan
    last: dict[str, float] = field(default_factory=dict)


class OutputCapture:
    """Forward hook on the root model: while armed, it records the model's output and hands the
    closure a detached leaf in its place, so that a backward run by the closure stops at the
    outputs and the model's graph stays whole for the optimizer's own passes."""

    def __init__(self, model: nn.Module) -> None:
        self.armed = False
        self.calls: list[tuple[object, Tensor | None]] = []
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: object) -> object:
        if not self.armed or not torch.is_grad_enabled():
            return None
        if isinstance(output, Tensor) and output.requires_grad:
            leaf = output.detach().requires_grad_()
            self.calls.append((output, leaf))
            return leaf
        self.calls.append((output, None))
        return None


class AdaptiveKFAC:
    """The adaptive step of :class:`acktr.KFAC` (``adaptive=True``); see the module docstring."""

    def __init__(
        self, opt: KFAC, model: nn.Module, settings: AdaptiveSettings,
        loss_kind: FisherKind | None,
    ) -> None:
        if loss_kind is not None and loss_kind not in FISHER_KINDS:
            raise ValueError(f"loss_kind must be one of {FISHER_KINDS} or None, got {loss_kind!r}")
        self.opt = opt
        self.settings = settings
        self.requested_kind = loss_kind
        lam = settings.initial_damping
        self.state = AdaptiveState(damping=lam, gamma=math.sqrt(lam + opt.weight_decay))
        self.capture = OutputCapture(model)
        self._warned_kind = False

    # ------------------------------------------------------------------ the phases
    def step(self, closure: Closure) -> Tensor:
        """One adaptive step; returns the loss before it."""
        with torch.enable_grad():  # KFAC.step runs under no_grad; the products need autograd
            return self._step(closure)

    def _step(self, closure: Closure) -> Tensor:
        opt, s, st = self.opt, self.settings, self.state
        steps = opt.steps
        params = [p for p in opt.param_groups[0]["params"] if p.requires_grad]
        loss, z_graph, z_loss, backward_done = self._evaluate(closure, params)
        st.loss = float(loss.detach())
        st.loss = group_mean([st.loss], opt.process_group)[0]
        if not math.isfinite(st.loss):
            self._undo_previous(params)
            st.last = {"rejected": 1.0}
            opt.steps += 1
            opt.preconditioner.steps = opt.steps
            return loss.detach()
        output_product = self._output_product(loss, z_graph, z_loss, backward_done)
        self._gradients(loss, z_graph, z_loss, backward_done, params)
        self._record_statistics(z_graph)
        raw = self._raw_gradient(params)
        gamma_step = steps % s.gamma_interval == 0
        lm_step = steps % s.damping_interval == 0
        solve_step = gamma_step or lm_step or steps % s.adapt_every == 0
        gammas = self._gamma_candidates() if gamma_step else [st.gamma]
        proposals = self._proposals(params, raw, gammas)
        prev = [opt.state[p].get("adaptive_delta") for p in params]
        has_prev = all(d is not None for d in prev) and any(bool(d.any()) for d in prev)
        if solve_step or math.isnan(st.alpha):
            choice, sol = self._solve(params, raw, proposals, prev if has_prev else None,
                                      z_graph, output_product)
            st.gamma = gammas[choice]
            w = sol.coefficients
            st.alpha = float(w[0])
            st.mu = float(w[1]) if w.shape[0] > 1 else 0.0
            st.predicted_change = sol.change
        else:
            choice, sol = 0, None
            st.predicted_change = math.nan
        if not (math.isfinite(st.alpha) and math.isfinite(st.mu)):
            self._reject_bad_step()
            opt.steps += 1
            opt.preconditioner.steps = opt.steps
            return loss.detach()
        delta = self._apply(params, proposals[choice], prev if has_prev else None)
        accepted = self._check_step(closure, params, delta, prev, backward_done,
                                    lm_step and sol is not None)
        st.last = {"rejected": float(not accepted)}
        opt.steps += 1
        opt.preconditioner.steps = opt.steps
        # leave .grad as the chosen natural gradient F~^-1 g, as the plain step does
        for p, d in zip(params, proposals[choice], strict=True):
            p.grad = -d
        return loss.detach()

    def _evaluate(
        self, closure: Closure, params: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, bool]:
        """Run the closure with the model's output split off (:class:`OutputCapture`)."""
        for p in params:
            p.grad = None
        self.capture.calls.clear()
        self.capture.armed = True
        try:
            with torch.enable_grad():
                result = closure()
        finally:
            self.capture.armed = False
        given = None
        if isinstance(result, (tuple, list)):
            if len(result) != 2 or not isinstance(result[1], Tensor):
                raise ValueError(
                    "KFAC(adaptive=True): the closure must return the loss, or (loss, outputs) "
                    f"with outputs a tensor; got a {type(result).__name__} of {len(result)}"
                )
            result, given = result
        if not isinstance(result, Tensor) or result.numel() != 1:
            raise ValueError(
                "KFAC(adaptive=True): the closure must return the training loss as a scalar "
                f"tensor, got {type(result).__name__}"
            )
        calls = self.capture.calls
        split = [(out, leaf) for out, leaf in calls if leaf is not None]
        if given is not None and not split:
            return result, given, given, False
        if len(calls) != 1 or not split:
            what = f"{len(calls)} times" if len(calls) != 1 else "once, returning no tensor"
            raise ValueError(
                f"KFAC(adaptive=True): the model was called {what} with gradients enabled in the "
                "closure; adaptive mode needs exactly one call returning the output tensor the "
                "loss is computed from (or a closure returning (loss, outputs))"
            )
        out, leaf = split[0]
        return result, out, leaf, leaf.grad is not None  # type: ignore[return-value]

    def _output_product(
        self, loss: Tensor, z_graph: Tensor, z_loss: Tensor, backward_done: bool
    ) -> OutputProduct:
        """The loss's own output Hessian when its graph is there (exact for any loss); else
        the Fisher of the loss kind (a closure that ran backward itself freed that graph)."""
        st = self.state
        if not backward_done and loss.requires_grad:
            product = loss_output_product(loss, z_loss)
            if not st.kind_fixed:
                self._identify_kind(product, z_loss)
            return product
        if st.loss_kind is None:
            st.loss_kind = self.requested_kind or "gaussian"
            st.loss_scale, st.kind_fixed = 1.0, True
        return fisher_output_product(z_graph, st.loss_kind, st.loss_scale)  # type: ignore[arg-type]

    def _identify_kind(self, product: OutputProduct, outputs: Tensor) -> None:
        """Which distribution's Fisher the loss curvature is, and at what scale: that kind (and
        ``sqrt(scale)`` on its Fisher loss) gives the Kronecker factors the loss's scale."""
        st, requested = self.state, self.requested_kind
        kinds = FISHER_KINDS if requested is None else (requested,)
        matches = match_fisher_kind(product, outputs, kinds)
        if requested is not None and not matches:
            st.loss_kind, st.loss_scale, st.kind_fixed = requested, 1.0, True
            if not self._warned_kind:
                warnings.warn(
                    f"KFAC(adaptive=True): the loss's curvature is not the Fisher of a "
                    f"{requested!r} output; its statistics use fisher_loss(outputs, "
                    f"{requested!r}) unscaled (the curvature products stay exact)",
                    RuntimeWarning, stacklevel=4,
                )
                self._warned_kind = True
            return
        if not matches:
            raise ValueError(
                "KFAC(adaptive=True) could not recognise the loss as the negative "
                "log-likelihood of a categorical, gaussian or bernoulli output of the model "
                "(up to a scale); pass loss_kind='categorical', 'gaussian' or 'bernoulli'"
            )
        kind = next(iter(matches))
        st.loss_kind, st.loss_scale = kind, matches[kind]
        st.kind_fixed = len(matches) == 1 or self.opt.steps >= 10

    def _gradients(
        self, loss: Tensor, z_graph: Tensor, z_loss: Tensor, backward_done: bool,
        params: list[Tensor],
    ) -> None:
        """``.grad`` of the training loss (through the split at the outputs), averaged over the
        process group."""
        if z_graph is z_loss:
            loss.backward(retain_graph=True)
        else:
            grad_out = z_loss.grad if backward_done else torch.autograd.grad(
                loss, z_loss, retain_graph=True)[0]
            z_graph.backward(grad_out.detach(), retain_graph=True)
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        average_gradients(params, group=self.opt.process_group)

    def _record_statistics(self, outputs: Tensor) -> None:
        pre, st = self.opt.preconditioner, self.state
        if not pre.stats_due:
            return
        kind = st.loss_kind or "gaussian"
        with pre.record_stats():
            loss = fisher_loss(outputs, kind)  # type: ignore[arg-type]
            if st.loss_scale != 1.0:
                loss = loss * math.sqrt(st.loss_scale)
            loss.backward(retain_graph=True)

    def _raw_gradient(self, params: list[Tensor]) -> list[Tensor]:
        """``g = grad h``: the loss gradient plus ``eta theta`` on the decayed parameters."""
        eta = self.opt.weight_decay
        for p in self.opt.decayed(params):
            if eta:
                p.grad.add_(p.detach(), alpha=eta)
        return [p.grad.detach().clone() for p in params]

    def _gamma_candidates(self) -> list[float]:
        st, s = self.state, self.settings
        floor = math.sqrt(self.opt.weight_decay + s.min_damping)
        cands = [st.gamma, st.gamma * s.omega2, st.gamma / s.omega2]
        return [max(g, floor) for g in cands]

    def _proposals(
        self, params: list[Tensor], raw: list[Tensor], gammas: list[float]
    ) -> list[list[Tensor]]:
        """``Delta = -F~^-1 g`` for each candidate ``gamma`` (damping ``gamma^2`` in the
        preconditioner: factored Tikhonov ``(A + pi gamma I) (x) (G + gamma / pi I)``)."""
        pre = self.opt.preconditioner
        pre.steps = self.opt.steps
        out = []
        for i, gamma in enumerate(gammas):
            for p, g in zip(params, raw, strict=True):
                p.grad.copy_(g)
            pre.damping = gamma * gamma
            if i == 0:
                pre.step()
            else:
                pre.apply_inverse(gamma * gamma)
            out.append([-p.grad.detach().clone() for p in params])
        pre.damping = self.state.gamma**2
        return out

    def _solve(
        self, params: list[Tensor], raw: list[Tensor], proposals: list[list[Tensor]],
        prev: list[Tensor] | None, outputs: Tensor, output_product: OutputProduct,
    ) -> tuple[int, Solution]:
        """Curvature products of every candidate and ``delta_0`` in one pass, then the 2x2 solve
        per candidate; the candidate with the lowest damped model value wins."""
        vectors = proposals + ([prev] if prev is not None else [])
        jvs = jacobian_vector_products(outputs, params, vectors)
        curvature = quadratic_forms(jvs, output_product)
        curvature = group_mean([curvature], self.opt.process_group)[0]
        model = self._model(params, raw, vectors, curvature)
        best: tuple[int, Solution] | None = None
        for i in range(len(proposals)):
            idx = [i] + ([len(proposals)] if prev is not None else [])
            sol = solve_quadratic_model(model.select(idx), self.state.damping)
            if best is None or (math.isfinite(sol.damped_change)
                                and not sol.damped_change >= best[1].damped_change):
                best = (i, sol)
        return best  # type: ignore[return-value]

    def _model(
        self, params: list[Tensor], raw: list[Tensor], vectors: list[list[Tensor]],
        curvature: Tensor,
    ) -> QuadraticModel:
        """The inner products of the model, as matrix products in the parameters' dtype."""
        flat = torch.stack([torch.cat([t.reshape(-1) for t in v]) for v in vectors])
        g = torch.cat([t.reshape(-1) for t in raw])
        inner = (flat @ flat.T).double().cpu()
        l2 = torch.zeros_like(inner)
        if self.opt.weight_decay:
            decayed = {id(p) for p in self.opt.decayed(params)}
            mask = torch.cat([torch.full((p.numel(),), float(id(p) in decayed), dtype=flat.dtype,
                                         device=flat.device) for p in params])
            l2 = self.opt.weight_decay * ((flat * mask) @ flat.T).double().cpu()
        return QuadraticModel(curvature.cpu(), inner, l2, (flat @ g).double().cpu())

    @torch.no_grad()
    def _apply(
        self, params: list[Tensor], proposal: list[Tensor], prev: list[Tensor] | None
    ) -> list[Tensor]:
        """``delta = alpha Delta + mu delta_0``; ``theta <- theta + delta``; returns ``delta``."""
        st = self.state
        delta = []
        for i, p in enumerate(params):
            d = proposal[i] * st.alpha
            if prev is not None and st.mu:
                d = d + prev[i] * st.mu
            p.add_(d.to(p.dtype))
            delta.append(d)
        for p, d in zip(params, delta, strict=True):
            self.opt.state[p]["adaptive_delta"] = d
        return delta

    def _check_step(
        self, closure: Closure, params: list[Tensor], delta: list[Tensor],
        prev: list[Tensor | None], backward_done: bool, lm_step: bool,
    ) -> bool:
        """``rho`` from the loss after the step (one more forward, no graph), the LM rule every
        ``T1`` steps, and the safeguard: a step whose new loss is NaN/Inf or higher than before
        on the same batch (``rho < 0``) is undone and ``lambda`` grows, by ``1/omega1`` per
        rejection in a row (``1/omega1``, then ``1/omega1^2``, ...). Returns whether it stands."""
        st, s = self.state, self.settings
        new_loss = self._loss_at_current(closure, params, backward_done)
        eta = self.opt.weight_decay
        # h includes eta/2 ||theta||^2: its change is eta (theta_old^T delta + ||delta||^2 / 2)
        reg = 0.0
        if eta:
            for p, d in zip(params, delta, strict=True):
                if any(q is p for q in self.opt.decayed([p])):
                    old = p.detach() - d
                    reg += eta * float((old * d).sum() + 0.5 * (d * d).sum())
        st.new_loss = new_loss
        actual = new_loss - st.loss + reg
        predicted = st.predicted_change
        rho = actual / predicted if predicted < 0 else math.nan
        if not math.isnan(predicted):  # steps that reuse (alpha, mu) have no model: keep the last
            st.rho = rho
        if not math.isfinite(new_loss) or not actual <= 0 or (lm_step and math.isnan(rho)):
            with torch.no_grad():
                for p, d in zip(params, delta, strict=True):
                    p.sub_(d.to(p.dtype))
            for p, d in zip(params, prev, strict=True):
                if d is None:
                    self.opt.state[p].pop("adaptive_delta", None)
                else:
                    self.opt.state[p]["adaptive_delta"] = d
            self._grow_damping()
            return False
        st.in_a_row = 0
        if lm_step:
            st.damping = max(levenberg_marquardt(st.damping, st.rho, s.omega1), s.min_damping)
        return True

    def _grow_damping(self) -> None:
        """A rejected step: ``lambda <- lambda / omega1^k`` for the ``k``-th rejection in a row."""
        st = self.state
        st.rejected += 1
        st.in_a_row += 1
        st.damping = min(st.damping / self.settings.omega1**st.in_a_row, 1e12)

    def _loss_at_current(
        self, closure: Closure, params: list[Tensor], backward_done: bool
    ) -> float:
        """The closure's loss at the current parameters (without touching ``.grad``)."""
        saved = [p.grad for p in params]
        try:
            if backward_done:  # a closure that runs backward needs gradients enabled
                with torch.enable_grad():
                    result = closure()
            else:
                with torch.no_grad():
                    result = closure()
        finally:
            for p, g in zip(params, saved, strict=True):
                p.grad = g
        if isinstance(result, (tuple, list)):
            result = result[0]
        value = float(result.detach()) if isinstance(result, Tensor) else float(result)
        return group_mean([value], self.opt.process_group)[0]

    def _undo_previous(self, params: list[Tensor]) -> None:
        """The loss is NaN/Inf at the start of a step: undo the previous update (if any),
        forget it as momentum, and raise ``lambda``."""
        with torch.no_grad():
            for p in params:
                d = self.opt.state[p].pop("adaptive_delta", None)
                if d is not None:
                    p.sub_(d.to(p.dtype))
        self._grow_damping()

    def _reject_bad_step(self) -> None:
        """A non-finite gradient or curvature: no update, ``lambda`` grows."""
        st = self.state
        self._grow_damping()
        st.alpha = st.mu = math.nan
        st.last = {"rejected": 1.0}

    # ------------------------------------------------------------------ reporting and state
    def metrics(self) -> dict[str, float]:
        st = self.state
        return {
            "alpha": st.alpha,
            "mu": st.mu,
            "rho": st.rho,
            "lambda": st.damping,
            "gamma": st.gamma,
            "loss": st.loss,
            "new_loss": st.new_loss,
            "predicted_change": st.predicted_change,
            "rejected_steps": float(st.rejected),
        }

    def state_dict(self) -> dict[str, object]:
        return asdict(self.state)

    def load_state_dict(self, state: dict[str, object]) -> None:
        known = set(AdaptiveState.__dataclass_fields__)
        self.state = AdaptiveState(**{k: v for k, v in state.items() if k in known})
