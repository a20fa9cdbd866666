"""A binary restricted Boltzmann machine and the input checks the RBM tools share.

The model (Grosse & Salakhutdinov, FANG slides, "Introduction"):

    E(v, h) = -v^T W h - a^T v - b^T h,      p(v, h) = exp(-E(v, h)) / Z,

with ``v`` in ``{0, 1}^n_visible`` and ``h`` in ``{0, 1}^n_hidden``. Summing out ``h`` gives the
free energy ``F(v) = -a^T v - sum_j softplus(b_j + v^T W[:, j])`` and ``p(v) = exp(-F(v)) / Z``.

As an exponential family the sufficient statistics are ``g(v, h) = (v, h, vec(v h^T))`` and the
natural parameters ``eta = (a, b, vec(W))``; ``vec`` is row-major throughout this package (entry
``(i, j)`` of ``W`` sits at ``i * n_hidden + j``), see :func:`flatten_parameters`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int, or a ``ValueError`` naming it (allowed: integers >= 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_binary(v: Tensor, n_visible: int, name: str = "v") -> Tensor:
    """Check that ``v`` is a ``(batch, n_visible)`` tensor of zeros and ones.

    Raises:
        TypeError: if ``v`` is not a tensor.
        ValueError: on a wrong shape, or any entry other than 0 and 1 (the first one is named).
    """
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.dim() != 2 or v.shape[1] != n_visible:
        raise ValueError(
            f"{name} must have shape (batch, {n_visible}) for an RBM with {n_visible} visible "
            f"units, got {tuple(v.shape)}"
        )
    bad = (v != 0) & (v != 1)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} must be binary (entries 0 or 1); {name}{list(idx)} = {float(v[idx])!r}. "
            "Binarize real-valued data first, e.g. (x > 0.5).float()"
        )
    return v


class RBM(nn.Module):
    """Binary-binary restricted Boltzmann machine.

    Energy ``E(v, h) = -v^T W h - a^T v - b^T h``. Parameters are ``nn.Parameter`` with
    ``requires_grad=False`` (the optimizers in :mod:`acktr.rbm.optimizers` update them in place);
    ``.to(device, dtype)`` moves them, and every method computes on their device and dtype.

    Args:
        n_visible: number of visible units (>= 1).
        n_hidden: number of hidden units (>= 1).
        weight_std: standard deviation of the Gaussian initial weights. Default 0.01
            (Hinton's practical guide); biases start at zero.
        generator: optional ``torch.Generator`` for the initial weights.

    Attributes:
        W: weights, shape ``(n_visible, n_hidden)``.
        a: visible biases, shape ``(n_visible,)``.
        b: hidden biases, shape ``(n_hidden,)``.
    """

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        weight_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_visible = check_positive_int("n_visible", n_visible)
        self.n_hidden = check_positive_int("n_hidden", n_hidden)
        if not weight_std >= 0.0:
            raise ValueError(f"weight_std must be >= 0, got {weight_std!r}")
        w = torch.randn(n_visible, n_hidden, generator=generator) * weight_std
        self.W = nn.Parameter(w, requires_grad=False)
        self.a = nn.Parameter(torch.zeros(n_visible), requires_grad=False)
        self.b = nn.Parameter(torch.zeros(n_hidden), requires_grad=False)

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"

    # -- conditionals ---------------------------------------------------------------------------
    def hidden_prob(self, v: Tensor) -> Tensor:
        """``p(h_j = 1 | v) = sigmoid(b_j + v^T W[:, j])``, shape ``(batch, n_hidden)``."""
        return torch.sigmoid(v @ self.W + self.b)

    def visible_prob(self, h: Tensor) -> Tensor:
        """``p(v_i = 1 | h) = sigmoid(a_i + W[i, :] h)``, shape ``(batch, n_visible)``."""
        return torch.sigmoid(h @ self.W.T + self.a)

    def sample_h(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A sample of ``h ~ p(h | v)`` (binary, shape ``(batch, n_hidden)``)."""
        self._check_shape(v, self.n_visible, "v")
        return torch.bernoulli(self.hidden_prob(v), generator=generator)

    def sample_v(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A sample of ``v ~ p(v | h)`` (binary, shape ``(batch, n_visible)``)."""
        self._check_shape(h, self.n_hidden, "h")
        return torch.bernoulli(self.visible_prob(h), generator=generator)

    # -- energies -------------------------------------------------------------------------------
    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """``E(v, h) = -v^T W h - a^T v - b^T h`` per row, shape ``(batch,)``."""
        self._check_shape(v, self.n_visible, "v")
        self._check_shape(h, self.n_hidden, "h")
        if v.shape[0] != h.shape[0]:
            raise ValueError(
                f"v and h must have the same batch size, got {v.shape[0]} and {h.shape[0]}"
            )
        return -((v @ self.W) * h).sum(1) - v @ self.a - h @ self.b

    def free_energy(self, v: Tensor) -> Tensor:
        """``F(v) = -a^T v - sum_j softplus(b_j + v^T W[:, j])``, shape ``(batch,)``.

        ``v`` must be binary with ``n_visible`` columns (checked).
        """
        check_binary(v, self.n_visible)
        return _free_energy(self, v)

    def log_prob(self, v: Tensor, log_z: float | Tensor) -> Tensor:
        """``log p(v) = -F(v) - log Z`` given a value (exact or estimated) of ``log Z``."""
        return -self.free_energy(v) - log_z

    def _check_shape(self, x: Tensor, n: int, name: str) -> None:
        if x.dim() != 2 or x.shape[1] != n:
            raise ValueError(f"{name} must have shape (batch, {n}), got {tuple(x.shape)}")


def _free_energy(rbm: RBM, v: Tensor) -> Tensor:
    return -(v @ rbm.a) - F.softplus(v @ rbm.W + rbm.b).sum(1)


def data_log_odds(data: Tensor, eps: float = 1e-3) -> Tensor:
    """Visible log-odds of the data's pixel means, clamped to ``[eps, 1 - eps]``.

    The initial visible biases recommended by Hinton's practical guide, and the base model of AIS
    (Salakhutdinov & Murray 2008). ``data`` must be binary.
    """
    if not isinstance(data, Tensor) or data.dim() != 2:
        raise ValueError(
            f"data must be a 2-d (n, n_visible) tensor, got {getattr(data, 'shape', data)!r}"
        )
    check_binary(data, data.shape[1], "data")
    p = data.mean(0).clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def flatten_parameters(W: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``(a, b, vec(W))`` as one vector, ``vec`` row-major: the order of ``(v, h, vec(v h^T))``."""
    return torch.cat([a, b, W.reshape(-1)])


def unflatten_parameters(x: Tensor, n_visible: int, n_hidden: int) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`flatten_parameters`: returns ``(W, a, b)``."""
    expected = n_visible + n_hidden + n_visible * n_hidden
    if x.shape != (expected,):
        raise ValueError(f"expected a vector of length {expected}, got shape {tuple(x.shape)}")
    a, b = x[:n_visible], x[n_visible : n_visible + n_hidden]
    return x[n_visible + n_hidden :].reshape(n_visible, n_hidden), a, b
