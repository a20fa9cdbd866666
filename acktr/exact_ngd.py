"""``ExactNGD``: the natural gradient of Bernacchia, Lengyel & Hennequin (2018) for MLPs.

For a network of dense layers ``x_i = phi_i(W_i x_{i-1})`` (``x_{i-1}`` with a 1 appended when
the layer has a bias) with a Gaussian output, eq. 10 of the paper gives the natural gradient of
layer ``i`` as

    dW_i = (1/L) <e_i e_i^T>_model^+  <e_i x_{i-1}^T>_data  <x_{i-1} x_{i-1}^T>_model^+

where ``e_i`` is the error backpropagated to layer ``i``, ``<.>_model`` averages over inputs from
the data and outputs *sampled from the model* and ``^+`` is the Moore-Penrose pseudo-inverse.
In a deep linear network this is exact: it solves ``F dtheta = grad`` for the singular Fisher
``F`` whenever no layer is narrower than the input and the output (Supplementary eq. 34; tested),
and in a bottleneck network it gives the projected dynamics of eq. 19. Discretised and damped
(eq. 20), with ``Lambda_i = <x x^T>``, ``Lambda~_i = <e e^T>``:

    Delta W_i = -(alpha/L) (Lambda~_i + sqrt(lambda) I)^-1 grad_i (Lambda_i + sqrt(lambda) I)^-1

with ``grad_i = -<e_i x_{i-1}^T>`` the gradient of the loss. The damping ``lambda`` follows the
Levenberg-Marquardt rule of eq. 21 from the ratio ``rho`` of the actual to the predicted change of
the loss, the prediction being (footnote 1) ``(-alpha + alpha^2/2) sum_i <D_i, grad_i>`` with
``D_i`` the update at ``alpha = 1``.

The covariances are K-FAC's factors (``Lambda_i = A``, ``Lambda~_i = G``), so statistics are
recorded exactly as for :class:`acktr.KFAC` (the Fisher loss's backward inside
``record_stats()``; ``K`` backward passes there average ``K`` target samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from acktr.blocks import KroneckerBlock
from acktr.linalg import damped_inverse, safe_eigh
from acktr.preconditioner import KFACPreconditioner
from acktr.schedules import Schedule, check_decay, check_non_negative, check_positive, resolve

ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Tanh, nn.Sigmoid, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Softplus, nn.Hardtanh, nn.Softsign, nn.Tanhshrink, nn.Flatten,
)
"""Parameter-free modules an ``nn.Sequential`` MLP may hold between its ``nn.Linear`` layers
(``nn.Flatten`` only reshapes the input)."""


def mlp_layers(model: nn.Module, optimizer: str = "ExactNGD") -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers of an MLP, checking that nothing else holds parameters.

    Every trainable parameter must be the weight or bias of an ``nn.Linear``. If ``model`` is an
    ``nn.Sequential``, its other children must be elementwise (:data:`ELEMENTWISE_MODULES`); in
    a custom module the activations in ``forward`` cannot be checked and are the user's promise.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.
        ValueError: naming the first unsupported module, or if there is no ``nn.Linear``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers: list[tuple[str, nn.Linear]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if module.weight.requires_grad:
                layers.append((name or "Linear", module))
            continue
        own = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if own:
            raise ValueError(
                f"{optimizer} supports MLPs of nn.Linear layers with elementwise activations; "
                f"module '{name}' ({type(module).__name__}) holds parameters {own}"
            )
    if isinstance(model, nn.Sequential):
        for idx, child in enumerate(model):
            if not isinstance(child, (nn.Linear, *ELEMENTWISE_MODULES)):
                allowed = ", ".join(t.__name__ for t in ELEMENTWISE_MODULES)
                raise ValueError(
                    f"{optimizer}: nn.Sequential child {idx} is {type(child).__name__}; only "
                    f"nn.Linear and elementwise modules ({allowed}) are supported"
                )
    if not layers:
        raise ValueError(f"{optimizer} found no trainable nn.Linear in {type(model).__name__}")
    return layers


def levenberg_marquardt(damping: float, rho: float) -> float:
    """Eq. 21: ``lambda * 3/2`` if ``rho < 0.25``, ``lambda * 2/3`` if ``rho > 0.75``, else
    unchanged. A NaN ``rho`` (the loss became non-finite) counts as ``rho < 0.25``."""
    if math.isnan(rho) or rho < 0.25:
        return damping * 1.5
    if rho > 0.75:
        return damping * (2.0 / 3.0)
    return damping


def damped_pinv(matrix: Tensor, shift: float, rtol: float) -> Tensor:
    """``(matrix + shift I)^-1`` for ``shift > 0`` (Cholesky); the Moore-Penrose pseudo-inverse
    for ``shift == 0`` (eigenvalues below ``rtol * max eigenvalue`` count as zero)."""
    if shift > 0:
        return damped_inverse(matrix, shift)
    evals, evecs = safe_eigh(matrix)
    keep = evals > rtol * evals.max().clamp_min(torch.finfo(evals.dtype).tiny)
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, 1.0), 0.0)
    return (evecs * inv) @ evecs.T


class ExactNGD(torch.optim.Optimizer):
    """Exact natural-gradient descent for MLPs (Bernacchia et al. 2018, eqs. 10, 20, 21).

    Usage is that of :class:`acktr.KFAC`; pass a closure to ``step`` to adapt the damping::

        opt = ExactNGD(model)
        out = model(x)
        with opt.record_stats():          # K passes here = K target samples (default 1)
            acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
        loss = 0.5 * ((out - y) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step(lambda: 0.5 * ((model(x) - y) ** 2).sum(1).mean(), loss=loss)

    Each step: (1) for every layer, ``D_i = (1/L) (G_i + sqrt(lambda) I)^-1 grad_i (A_i +
    sqrt(lambda) I)^-1`` from the latest statistics (pseudo-inverses if ``lambda = 0``), eq. 20;
    (2) the predicted change of the loss, ``(-lr + lr^2/2) sum_i <D_i, grad_i>`` (footnote 1);
    (3) ``theta <- theta - lr D``; (4) with a closure, ``rho = (loss_after - loss_before) /
    predicted`` and the Levenberg-Marquardt update of ``lambda`` (eq. 21). After it ``.grad``
    holds ``D``.

    ``L`` is the number of ``nn.Linear`` layers, ``A_i`` the second moment of the layer's input
    (with the homogeneous coordinate when it has a bias) and ``G_i`` that of the per-example
    output gradient of the Fisher loss (targets sampled from the model). The damping is on the
    scale of the unit-variance Fisher that ``fisher_loss(out, "gaussian")`` gives; the update
    itself is invariant to the output variance when ``lambda = 0``.

    Args:
        model: an MLP: ``nn.Linear`` layers (each called once per forward, on ``(batch, in)``
            inputs) with elementwise activations; see :func:`mlp_layers` for what is checked.
        lr: ``alpha`` of eq. 20 (float or callable of the step). Default 1.0, the paper's.
        damping: initial ``lambda`` of eq. 20, >= 0. Default 1e-3. ``0`` means pseudo-inverses
            (and the adaptation cannot move it).
        adapt_damping: apply eq. 21 when ``step`` gets a closure. Default True.
        min_damping: floor of the adapted damping. Default 1e-12.
        stat_decay: EMA decay of the covariances, in [0, 1). Default 0.0: each step uses only
            its own minibatch's statistics, as in the paper.
        pinv_rtol: relative eigenvalue cutoff of the pseudo-inverse (``damping = 0``). Default
            None: ``sqrt(eps)`` of the statistics' dtype (1.5e-8 in float64).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: Schedule = 1.0,
        damping: float = 1e-3,
        adapt_damping: bool = True,
        min_damping: float = 1e-12,
        stat_decay: float = 0.0,
        pinv_rtol: float | None = None,
    ) -> None:
        self.layers = mlp_layers(model, "ExactNGD")
        check_positive("lr", lr)
        check_non_negative("damping", damping)
        check_non_negative("min_damping", min_damping)
        check_decay("stat_decay", stat_decay)
        if pinv_rtol is not None:
            check_positive("pinv_rtol", pinv_rtol)
        # K-FAC's statistics machinery records A and G; its preconditioning is never used.
        self.stats = KFACPreconditioner(model, stat_decay=stat_decay, fallback="identity")
        for name, module in self.layers:
            module.register_forward_pre_hook(self._check_input_shape(name))
        params = [p for _, m in self.layers for p in m.parameters() if p.requires_grad]
        super().__init__(params, {"lr": resolve(lr, 0)})
        self._lr = lr
        self.damping = float(damping)
        self.adapt_damping = bool(adapt_damping)
        self.min_damping = float(min_damping)
        self.pinv_rtol = pinv_rtol
        self.steps = 0
        self._last: dict[str, float] = {}

    @staticmethod
    def _check_input_shape(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            if inputs[0].dim() != 2:
                raise ValueError(
                    f"ExactNGD: layer '{name}' got an input of shape {tuple(inputs[0].shape)}; "
                    "MLP layers need (batch, features) inputs (flatten first)"
                )

        return hook

    # ------------------------------------------------------------------ statistics
    def record_stats(self) -> AbstractContextManager[None]:
        """Context in which backward passes of the Fisher loss record ``A_i`` and ``G_i``.

        Several passes inside one context average several target samples (``K`` of the paper).
        ``.grad`` is left untouched.
        """
        return self.stats.record_stats()

    @property
    def blocks(self) -> dict[str, KroneckerBlock]:
        """The per-layer statistics: ``block.A`` (``Lambda_i``) and ``block.G`` (``Lambda~_i``)."""
        return self.stats.blocks

    def _check_recorded(self) -> None:
        missing = [name for name, b in self.blocks.items() if not b.recorded]
        if missing:
            raise RuntimeError(
                f"ExactNGD.step() before statistics were recorded for layers {missing}: run the "
                "Fisher loss backward inside `with opt.record_stats():` (acktr.fisher_loss)"
            )

    # ------------------------------------------------------------------ the step
    def natural_gradient(self, damping: float | None = None) -> dict[str, Tensor]:
        """Eq. 20 at ``alpha = 1``: ``D_i`` per layer as ``(out, in [+1])`` matrices.

        Reads the gradients in ``.grad`` (layers without one are left out).
        """
        self._check_recorded()
        lam = self.damping if damping is None else check_non_negative("damping", damping)
        shift = math.sqrt(lam)
        n_layers = len(self.blocks)
        out: dict[str, Tensor] = {}
        for name, block in self.blocks.items():
            grad = block.helper.grad_matrix()
            if grad is None:
                continue
            rtol = self.pinv_rtol or math.sqrt(torch.finfo(block.A.dtype).eps)
            g_inv = damped_pinv(block.G, shift, rtol)
            a_inv = damped_pinv(block.A, shift, rtol)
            out[name] = (g_inv @ grad.to(block.dtype) @ a_inv / n_layers).to(grad.dtype)
        return out

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Tensor | float] | None = None,
        *,
        loss: Tensor | float | None = None,
    ) -> float | None:
        """One damped natural-gradient step (eq. 20) and, with ``closure``, eq. 21.

        Args:
            closure: re-evaluates the training loss on the current minibatch and returns it; it
                is called under ``torch.no_grad()`` (no backward needed), before the update
                (unless ``loss`` is given) and after it.
            loss: the training loss at the current parameters, if already computed (saves one
                closure call).

        Returns:
            The loss before the step (None without closure and ``loss``).
        """
        lr = check_positive("lr", self._lr, self.steps)
        self.param_groups[0]["lr"] = lr
        directions = self.natural_gradient()
        quad = sum(float((d * self.blocks[n].helper.grad_matrix()).sum())
                   for n, d in directions.items())
        predicted = (-lr + 0.5 * lr * lr) * quad  # footnote 1 of the paper
        before = None
        if loss is not None:
            before = float(loss.detach() if isinstance(loss, Tensor) else loss)
        elif closure is not None:
            before = float(closure())
        for name, d in directions.items():
            helper = self.blocks[name].helper
            helper.set_grad_matrix(d)
            for p in helper.params():
                p.add_(p.grad, alpha=-lr)
        self._last = {"lr": lr, "damping": self.damping, "predicted_change": predicted}
        if closure is not None and before is not None:
            after = float(closure())
            actual = after - before
            rho = actual / predicted if predicted != 0 else float("nan")
            self._last.update(actual_change=actual, rho=rho)
            if self.adapt_damping and predicted != 0:
                self.damping = max(levenberg_marquardt(self.damping, rho), self.min_damping)
        self.steps += 1
        return before

    def metrics(self) -> dict[str, float]:
        """The last step's ``lr``, ``damping`` (used by it), ``predicted_change`` and, with a
        closure, ``actual_change`` and ``rho``; ``next_damping`` is the adapted value."""
        return {**self._last, "next_damping": self.damping}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, object]:  # type: ignore[override]
        """Hyperparameters, the adapted damping, the step count and the covariance statistics."""
        state = super().state_dict()
        state["exact_ngd"] = {
            "damping": self.damping,
            "steps": self.steps,
            "stats": self.stats.state_dict(),
        }
        return state

    def load_state_dict(self, state_dict: dict[str, object]) -> None:  # type: ignore[override]
        state = dict(state_dict)
        if "exact_ngd" not in state:
            raise ValueError("not an ExactNGD state dict: missing 'exact_ngd'")
        own: dict = state.pop("exact_ngd")  # type: ignore[assignment]
        self.stats.load_state_dict(own["stats"])
        self.damping = float(own["damping"])
        self.steps = int(own["steps"])
        super().load_state_dict(state)
