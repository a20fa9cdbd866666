"""``RNGD``: relative natural gradient descent (Sun & Nielsen, ICML 2017).

Each dense layer is a subsystem whose reference is its input ``x`` (``x~ = [x, 1]`` with a bias).
Its relative Fisher information metric (RFIM) has a closed form (the slides' table, ``t = w^T x~``
the pre-activation of a neuron, ``eta = softmax(W x~)``):

=============  =====================================================================
layer          RFIM of the layer's ``[W | b]`` (rows = neurons)
=============  =====================================================================
tanh           ``diag_i[ sech^2(t_i) x~ x~^T ]``
sigmoid        ``diag_i[ s_i (1 - s_i) x~ x~^T ]``, ``s = sigmoid(t)``
relu           ``diag_i[ (iota + (1 - iota) sigmoid((1 - iota) t_i / omega))^2 x~ x~^T ]``
elu            ``diag_i[ nu_i x~ x~^T ]``, ``nu = 1`` if ``t >= 0`` else ``(alpha exp(t))^2``
linear         ``diag[ x~ x~^T, ..., x~ x~^T ]``
softmax        ``[(eta_i delta_ij - eta_i eta_j) x~ x~^T]_ij`` (full block matrix)
=============  =====================================================================

They are the Fisher of the layer's stochastic output given its input: a Bernoulli unit with
``p(y = 1) = (1 + tanh t) / 2`` (tanh) or ``sigmoid(t)`` (sigmoid); a Gaussian of unit variance
around a leaky relu smoothed with ``omega`` (relu), around ``elu(t)`` (elu) or ``t`` (linear);
a categorical over ``softmax(W x~)`` (softmax). RNGD averages the RFIM over the minibatch's
references, ``g_bar = (1/n) sum_k g(W | x_k)``, and updates every layer by
``W <- W - gamma (g_bar + epsilon I)^-1 dL/dW`` with the inverse recomputed every ``T``
minibatches (the slides use T = 100). The damping ``epsilon`` is our addition: ``g_bar`` from one
minibatch is singular whenever the batch is smaller than the layer's input (and for softmax,
whose block is singular along ``w_i -> w_i + v`` for all ``i``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

from acktr.blocks import factor_dtype
from acktr.exact_ngd import mlp_layers
from acktr.layers import LinearHelper
from acktr.linalg import damped_inverse
from acktr.schedules import (
    Schedule,
    check_choice,
    check_interval,
    check_non_negative,
    check_positive,
    resolve,
)

Activation = Literal["tanh", "sigmoid", "relu", "elu", "linear", "softmax"]
ACTIVATIONS: tuple[str, ...] = ("tanh", "sigmoid", "relu", "elu", "linear", "softmax")
NEURONWISE: tuple[str, ...] = ("tanh", "sigmoid", "relu", "elu")

ACTIVATION_MODULES: dict[type[nn.Module], str] = {
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ReLU: "relu",
    nn.LeakyReLU: "relu",
    nn.ELU: "elu",
    nn.Identity: "linear",
    nn.Softmax: "softmax",
    nn.LogSoftmax: "softmax",
}
"""The modules that declare a layer's activation when they follow its ``nn.Linear`` in an
``nn.Sequential``."""


def neuron_coefficient(
    kind: str, t: Tensor, leak: float = 0.0, smoothness: float = 1.0, alpha: float = 1.0
) -> Tensor:
    """``nu_f(w, x)`` of the slides' table for each pre-activation in ``t``.

    Args:
        kind: ``"tanh"``, ``"sigmoid"``, ``"relu"`` or ``"elu"``.
        t: pre-activations ``w^T x~``.
        leak: relu's ``iota`` (0 for relu, ``negative_slope`` for a leaky relu).
        smoothness: relu's ``omega``.
        alpha: elu's ``alpha``.
    """
    if kind == "tanh":
        return 1.0 - torch.tanh(t) ** 2  # sech^2
    if kind == "sigmoid":
        s = torch.sigmoid(t)
        return s * (1.0 - s)
    if kind == "relu":
        return (leak + (1.0 - leak) * torch.sigmoid((1.0 - leak) * t / smoothness)) ** 2
    if kind == "elu":
        return torch.where(t >= 0, torch.ones_like(t), (alpha * torch.exp(t.clamp_max(0))) ** 2)
    raise ValueError(f"no per-neuron coefficient for activation {kind!r}; use one of {NEURONWISE}")


class RelativeFisherBlock:
    """The minibatch-averaged relative Fisher of one ``nn.Linear`` layer and its inverse.

    Acts on the layer's gradient matrix ``V = [dW | db]`` (``(out, in [+1])``); the dense form
    (:meth:`to_dense`) acts on ``V.flatten()`` (row-major: neuron-major), like
    :class:`acktr.KroneckerBlock`.

    Args:
        name: the layer's name (messages, state dicts).
        module: the layer.
        kind: its activation (see the module docstring).
        leak, smoothness, alpha: relu's ``iota`` and ``omega``, elu's ``alpha``.
    """

    def __init__(
        self, name: str, module: nn.Linear, kind: str, leak: float = 0.0,
        smoothness: float = 1.0, alpha: float = 1.0,
    ) -> None:
        self.name = name
        self.helper = LinearHelper(module)
        self.kind = check_choice("activation", kind, ACTIVATIONS)
        self.leak, self.smoothness, self.alpha = float(leak), float(smoothness), float(alpha)
        self.dtype = factor_dtype(module.weight.dtype)
        self.matrix: Tensor | None = None  # (d, d) linear, (m, d, d) neuron-wise, (md, md) softmax
        self.inverse: Tensor | None = None

    def _inputs(self, x: Tensor) -> Tensor:
        x = x.detach().to(self.dtype)
        if self.helper.has_bias:
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
        return x

    def update(self, x: Tensor, t: Tensor) -> None:
        """Set the RFIM averaged over a minibatch from the layer's inputs ``x`` ``(n, in)`` and
        pre-activations ``t = W x~`` ``(n, out)``."""
        xb, t = self._inputs(x), t.detach().to(self.dtype)
        n, d = xb.shape
        if self.kind == "linear":
            self.matrix = xb.T @ xb / n
        elif self.kind == "softmax":
            eta = torch.softmax(t, dim=1)
            h = torch.diag_embed(eta) - eta.unsqueeze(2) * eta.unsqueeze(1)  # (n, m, m)
            m = eta.shape[1]
            outer = (xb.unsqueeze(2) * xb.unsqueeze(1)).reshape(n, d * d)
            full = (h.reshape(n, m * m).T @ outer / n).reshape(m, m, d, d)
            self.matrix = full.permute(0, 2, 1, 3).reshape(m * d, m * d)
        else:
            nu = neuron_coefficient(self.kind, t, self.leak, self.smoothness, self.alpha)
            weighted = nu.T.unsqueeze(2) * xb.unsqueeze(0)  # (m, n, d)
            self.matrix = weighted.transpose(1, 2) @ xb / n  # (m, d, d)

    def refresh(self, damping: float) -> None:
        """Recompute ``(g_bar + damping I)^-1`` (Cholesky, with a float64 retry)."""
        if self.matrix is None:
            raise RuntimeError(f"RNGD: layer '{self.name}' has no relative Fisher yet")
        if self.matrix.dim() == 2:
            self.inverse = damped_inverse(self.matrix, damping)
        else:
            self.inverse = torch.stack([damped_inverse(m, damping) for m in self.matrix])

    def precondition(self, grad: Tensor) -> Tensor:
        """``(g_bar + damping I)^-1 grad`` for a gradient matrix ``(out, in [+1])``."""
        if self.inverse is None:
            raise RuntimeError(f"RNGD: layer '{self.name}' has no inverse yet")
        v = grad.to(self.dtype)
        if self.kind == "linear":
            out = v @ self.inverse
        elif self.kind == "softmax":
            out = (self.inverse @ v.flatten()).reshape(v.shape)
        else:
            out = (self.inverse @ v.unsqueeze(2)).squeeze(2)
        return out.to(grad.dtype)

    def to_dense(self) -> Tensor:
        """The (undamped) RFIM as a matrix on ``V.flatten()``."""
        if self.matrix is None:
            raise RuntimeError(f"RNGD: layer '{self.name}' has no relative Fisher yet")
        if self.kind == "linear":
            m = self.helper.out_features
            return torch.kron(torch.eye(m, dtype=self.dtype, device=self.matrix.device),
                              self.matrix)
        if self.kind == "softmax":
            return self.matrix
        return torch.block_diag(*self.matrix)


def layer_activations(
    model: nn.Module, activations: Sequence[str] | None, output: str
) -> list[tuple[str, nn.Linear, str, dict[str, float]]]:
    """Each ``nn.Linear`` with its activation kind and parameters (``leak``, ``alpha``).

    With ``activations`` (one name per ``nn.Linear`` in ``model.modules()`` order) any MLP
    module works; otherwise ``model`` must be an ``nn.Sequential`` of ``nn.Linear`` layers each
    followed by at most one of :data:`ACTIVATION_MODULES` (``nn.Flatten`` allowed first); the
    last layer without an activation module is ``output``.

    Raises:
        ValueError: naming the unsupported module, activation or count.
    """
    layers = mlp_layers(model, "RNGD")
    if activations is not None:
        names = list(activations)
        if len(names) != len(layers):
            raise ValueError(
                f"activations has {len(names)} entries but the model has {len(layers)} "
                f"nn.Linear layers ({[n for n, _ in layers]})"
            )
        for a in names:
            check_choice("activation", a, ACTIVATIONS)
        return [(n, m, a, {}) for (n, m), a in zip(layers, names, strict=True)]
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"RNGD cannot read the activations of a {type(model).__name__}: pass an "
            "nn.Sequential of Linear + activation modules, or activations=[...] (one of "
            f"{ACTIVATIONS} per nn.Linear)"
        )
    children = list(model.named_children())
    out: list[tuple[str, nn.Linear, str, dict[str, float]]] = []
    i = 0
    while i < len(children):
        name, child = children[i]
        if isinstance(child, nn.Flatten) and not out:
            i += 1
            continue
        if not isinstance(child, nn.Linear):
            allowed = ", ".join(t.__name__ for t in ACTIVATION_MODULES)
            raise ValueError(
                f"RNGD: child '{name}' ({type(child).__name__}) does not follow an nn.Linear "
                f"as its activation; supported: nn.Linear each followed by one of {allowed}"
            )
        nxt = children[i + 1][1] if i + 1 < len(children) else None
        kind, params = None, {}
        if nxt is not None and type(nxt) in ACTIVATION_MODULES:
            kind = ACTIVATION_MODULES[type(nxt)]
            if isinstance(nxt, nn.LeakyReLU):
                params["leak"] = float(nxt.negative_slope)
            if isinstance(nxt, nn.ELU):
                params["alpha"] = float(nxt.alpha)
            i += 1
        elif nxt is None:
            kind = output
        else:
            kind = "linear"
        out.append((name, child, kind, params))
        i += 1
    return out


class RNGD(torch.optim.Optimizer):
    """Relative natural gradient descent (Sun & Nielsen 2017) for MLPs.

    ``W <- W - lr (g_bar + damping I)^-1 (dL/dW + weight_decay W)`` per layer, ``g_bar`` the
    layer's relative Fisher (module docstring) averaged over the minibatch whose forward pass ran
    inside ``record_stats()``, refreshed (with its inverse) every ``inverse_every`` steps::

        opt = RNGD(nn.Sequential(nn.Linear(64, 80), nn.ReLU(), nn.Linear(80, 10)))
        with opt.record_stats():      # records only when opt.stats_due
            out = model(x)
        opt.zero_grad()
        F.cross_entropy(out, y).backward()
        opt.step()

    How the activations are declared: by the model's structure (an ``nn.Sequential`` where each
    ``nn.Linear`` is followed by ``nn.Tanh``, ``nn.Sigmoid``, ``nn.ReLU``, ``nn.LeakyReLU``
    (``iota = negative_slope``), ``nn.ELU`` (its ``alpha``), ``nn.Identity``, ``nn.Softmax`` /
    ``nn.LogSoftmax``, or nothing: ``"linear"``, except the last layer, which is ``output``), or
    explicitly with ``activations``. Anything else is a ``ValueError``.

    Args:
        model: the MLP.
        lr: ``gamma`` (float or callable of the step). Default 0.1.
        damping: ``epsilon`` added to every block before inversion, > 0. Default 0.1.
        weight_decay: L2 coefficient added to the gradient. Default 0.
        inverse_every: ``T``: the relative Fisher and its inverse are recomputed at steps
            ``k % T == 0`` from that step's minibatch. Default 100 (the slides').
        activations: one of ``"tanh"``, ``"sigmoid"``, ``"relu"``, ``"elu"``, ``"linear"``,
            ``"softmax"`` per ``nn.Linear`` (model order), or None to read them from an
            ``nn.Sequential``. Default None.
        output: the kind of a last ``nn.Linear`` with no activation module: ``"softmax"``
            (logits of a cross-entropy loss, default) or ``"linear"`` (regression).
        relu_smoothness: ``omega`` of the relu RFIM. Default 1.0 (the slides leave it open).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: Schedule = 0.1,
        damping: float = 0.1,
        weight_decay: float = 0.0,
        inverse_every: int = 100,
        activations: Sequence[str] | None = None,
        output: Literal["softmax", "linear"] = "softmax",
        relu_smoothness: float = 1.0,
    ) -> None:
        check_positive("lr", lr)
        self.damping = check_positive("damping", damping)
        check_non_negative("weight_decay", weight_decay)
        self.inverse_every = check_interval("inverse_every", inverse_every)
        check_choice("output", output, ("softmax", "linear"))
        check_positive("relu_smoothness", relu_smoothness)
        self.blocks: dict[str, RelativeFisherBlock] = {}
        for name, module, kind, params in layer_activations(model, activations, output):
            name = name or "Linear"
            self.blocks[name] = RelativeFisherBlock(
                name, module, kind, smoothness=relu_smoothness, **params
            )
        params = [p for b in self.blocks.values() for p in b.helper.params()]
        super().__init__(params, {"lr": resolve(lr, 0), "weight_decay": float(weight_decay)})
        self._lr = lr
        self.steps = 0
        self._recording = False
        self._captured: dict[str, tuple[Tensor, Tensor]] = {}
        for name, block in self.blocks.items():
            block.helper.module.register_forward_hook(self._capture(name))

    # ------------------------------------------------------------------ statistics
    @property
    def stats_due(self) -> bool:
        """True when the next ``step()`` refreshes the relative Fisher (needs a recorded pass)."""
        return self.steps % self.inverse_every == 0

    def _capture(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if not self._recording:
                return
            if inputs[0].dim() != 2:
                raise ValueError(
                    f"RNGD: layer '{name}' got an input of shape {tuple(inputs[0].shape)}; "
                    "MLP layers need (batch, features) inputs (flatten first)"
                )
            self._captured[name] = (inputs[0].detach(), output.detach())

        return hook

    @contextmanager
    def record_stats(self) -> Iterator[None]:
        """Forward passes inside this context give the references (layer inputs) of the next
        refresh; does nothing unless ``stats_due``."""
        if self._recording:
            raise RuntimeError("record_stats() contexts cannot be nested")
        self._recording = self.stats_due
        try:
            yield
        finally:
            self._recording = False

    def refresh(self) -> None:
        """Recompute every layer's averaged relative Fisher and its damped inverse."""
        missing = [n for n in self.blocks if n not in self._captured]
        if missing:
            raise RuntimeError(
                f"RNGD step {self.steps} refreshes the relative Fisher but layers {missing} "
                "recorded no forward pass: run the forward inside `with opt.record_stats():`"
            )
        for name, block in self.blocks.items():
            block.update(*self._captured[name])
            block.refresh(self.damping)
        self._captured.clear()

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """Refresh when due, then ``W <- W - lr (g_bar + eps I)^-1 (grad + weight_decay W)``.

        After it ``.grad`` holds the preconditioned gradient. Returns ``closure()`` if given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        lr = group["lr"] = check_positive("lr", self._lr, self.steps)
        if self.stats_due:
            self.refresh()
        for block in self.blocks.values():
            helper = block.helper
            grad = helper.grad_matrix()
            if grad is None:
                continue
            if group["weight_decay"]:
                w = helper.weight
                params = w.reshape(w.shape[0], -1)
                if helper.has_bias:
                    params = torch.cat([params, helper.module.bias.unsqueeze(1)], 1)
                grad = grad + group["weight_decay"] * params
            helper.set_grad_matrix(block.precondition(grad))
            for p in helper.params():
                p.add_(p.grad, alpha=-lr)
        self.steps += 1
        return loss

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, object]:  # type: ignore[override]
        """Hyperparameters, the step count and every layer's relative Fisher and inverse."""
        state = super().state_dict()
        state["rngd"] = {
            "steps": self.steps,
            "blocks": {n: {"matrix": b.matrix, "inverse": b.inverse}
                       for n, b in self.blocks.items()},
        }
        return state

    def load_state_dict(self, state_dict: dict[str, object]) -> None:  # type: ignore[override]
        state = dict(state_dict)
        if "rngd" not in state:
            raise ValueError("not an RNGD state dict: missing 'rngd'")
        own: dict = state.pop("rngd")  # type: ignore[assignment]
        if set(own["blocks"]) != set(self.blocks):
            raise ValueError(
                f"RNGD state has layers {sorted(own['blocks'])}, the model {sorted(self.blocks)}"
            )
        for name, s in own["blocks"].items():
            self.blocks[name].matrix = s["matrix"]
            self.blocks[name].inverse = s["inverse"]
        self.steps = int(own["steps"])
        super().load_state_dict(state)

